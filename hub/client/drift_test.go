package client_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

func TestDriftAgainstHub(t *testing.T) {
	c := startHub(t)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	file := onnxtest.MLP(3, nil, 2, 7)
	if _, err := c.RegisterModel(ctx, "ws", "m", bytes.NewReader(file), int64(len(file)), client.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDeployment(ctx, "ws", hub.DeploymentCreate{Name: "clf", Model: "m", Selector: map[string]string{"zone": "eu"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.DeploymentDrift(ctx, "ws", "clf", "30m")
	if err != nil {
		t.Fatal(err)
	}
	// No telemetry yet: no baseline, nothing judged.
	if rep.Deployment != "clf" || rep.Model != "m" || rep.Version != 1 || rep.Status != hub.DriftPendingBaseline ||
		rep.Drifting || len(rep.Features) != 0 || rep.Until.Sub(rep.Since).Minutes() < 29.9 {
		t.Errorf("report %+v", rep)
	}
	if _, err := c.DeploymentDrift(ctx, "ws", "nope", ""); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown deployment: %v, want ErrNotFound", err)
	}
	if _, err := c.DeploymentDrift(ctx, "ws", "clf", "soon"); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad since: %v, want ErrInvalid", err)
	}
	caps, err := c.CapturedInputs(ctx, "ws", "clf", 0, 0)
	if err != nil || len(caps) != 0 {
		t.Errorf("captured %v, %v; want none", caps, err)
	}
	if _, err := c.CapturedInputs(ctx, "ws", "clf", 0, 20_000); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("limit 20000: %v, want ErrInvalid", err)
	}
	d, err := c.GetDeployment(ctx, "ws", "clf")
	if err != nil || d.Drifting {
		t.Errorf("deployment %+v, %v; want not drifting", d, err)
	}
}
