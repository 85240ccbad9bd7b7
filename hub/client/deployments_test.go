package client_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

func TestDeploymentsAgainstHub(t *testing.T) {
	c := startHub(t)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	file := onnxtest.MLP(3, nil, 2, 7)
	if _, err := c.RegisterModel(ctx, "ws", "m", bytes.NewReader(file), int64(len(file)), client.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateJoinToken(ctx, map[string]string{"zone": "eu"}, "")
	if err != nil {
		t.Fatal(err)
	}
	en, err := c.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: "edge-1", Capabilities: hub.Capabilities{Kind: hub.KindEdge, OS: "linux", Arch: "amd64", CPUs: 1}})
	if err != nil {
		t.Fatal(err)
	}

	d, err := c.CreateDeployment(ctx, "ws", hub.DeploymentCreate{Name: "clf", Model: "m", Selector: map[string]string{"zone": "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || len(d.Targets) != 1 || d.Targets[0].Agent != en.AgentID || d.Targets[0].State != hub.TargetPending {
		t.Fatalf("created %+v", d)
	}
	_, err = c.CreateDeployment(ctx, "ws", hub.DeploymentCreate{Name: "x", Model: "m:2", Agents: []string{en.AgentID}})
	var ae *client.APIError
	if !errors.Is(err, hub.ErrNotFound) || !errors.As(err, &ae) || !strings.Contains(ae.Message, "version 2") {
		t.Errorf("unknown version: %v", err)
	}
	if err := c.DeleteModelVersion(ctx, "ws", "m", 1, true); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("delete deployed version: %v", err)
	}
	u, err := c.UpdateDeployment(ctx, "ws", "clf", hub.DeploymentUpdate{Options: &hub.RuntimeOptions{MaxBatch: 2}})
	if err != nil || u.Options.MaxBatch != 2 || u.Version != 1 {
		t.Fatalf("update %+v, %v", u, err)
	}
	list, err := c.ListDeployments(ctx, "ws")
	if err != nil || len(list) != 1 || list[0].Name != "clf" {
		t.Fatalf("list %+v, %v", list, err)
	}
	if err := c.DeleteDeployment(ctx, "ws", "clf"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDeployment(ctx, "ws", "clf"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}
