package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

func TestModelsAgainstHub(t *testing.T) {
	c := startHub(t)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	file := onnxtest.MLP(3, nil, 2, 7)
	sum := sha256.Sum256(file)

	v1, err := c.RegisterModel(ctx, "ws", "m", bytes.NewReader(file), int64(len(file)), client.RegisterOptions{Description: "d", Tags: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.SHA256 != hex.EncodeToString(sum[:]) || v1.Tags["k"] != "v" || v1.Description != "d" {
		t.Fatalf("v1 = %+v", v1)
	}
	// Unknown size: sent chunked.
	v2, err := c.RegisterModel(ctx, "ws", "m", strings.NewReader(string(file)), -1, client.RegisterOptions{})
	if err != nil || v2.Version != 2 {
		t.Fatalf("v2 = %+v, %v", v2, err)
	}
	run, err := c.CreateRun(ctx, "ws", hub.RunCreate{Experiment: "e"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutArtifact(ctx, "ws", run.ID, "model.onnx", bytes.NewReader(file), int64(len(file))); err != nil {
		t.Fatal(err)
	}
	v3, err := c.RegisterModelFromRun(ctx, "ws", "m", run.ID, "model.onnx", client.RegisterOptions{})
	if err != nil || v3.Version != 3 || v3.RunID != run.ID || v3.Experiment != "e" {
		t.Fatalf("v3 = %+v, %v", v3, err)
	}
	_, err = c.RegisterModel(ctx, "ws", "m", strings.NewReader("garbage"), 7, client.RegisterOptions{})
	var ae *client.APIError
	if !errors.Is(err, hub.ErrInvalid) || !errors.As(err, &ae) || !strings.Contains(ae.Message, "not a valid ONNX model") {
		t.Errorf("garbage: %v", err)
	}

	if _, err := c.SetModelAlias(ctx, "ws", "m", "prod", 2); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetModelVersion(ctx, "ws", "m", hub.VersionRef{Alias: "prod"})
	if err != nil || got.Version != 2 {
		t.Fatalf("@prod = %+v, %v", got, err)
	}
	latest, err := c.GetModelVersion(ctx, "ws", "m", hub.VersionRef{})
	if err != nil || latest.Version != 3 {
		t.Fatalf("latest = %+v, %v", latest, err)
	}
	var buf bytes.Buffer
	if err := c.DownloadModel(ctx, "ws", "m", hub.VersionRef{Version: 2}, &buf); err != nil || !bytes.Equal(buf.Bytes(), file) {
		t.Fatalf("download: %d bytes, %v", buf.Len(), err)
	}
	if mv, err := c.SetModelTags(ctx, "ws", "m", hub.VersionRef{Version: 1}, map[string]string{"x": "y"}); err != nil || mv.Tags["x"] != "y" || mv.Tags["k"] != "v" {
		t.Fatalf("tags: %+v, %v", mv, err)
	}
	ms, err := c.ListModels(ctx, "ws")
	if err != nil || len(ms) != 1 || ms[0].Versions != 3 || ms[0].Aliases["prod"] != 2 {
		t.Fatalf("models: %+v, %v", ms, err)
	}
	vs, err := c.ListModelVersions(ctx, "ws", "m")
	if err != nil || len(vs) != 3 || vs[0].Version != 3 {
		t.Fatalf("versions: %+v, %v", vs, err)
	}
	if err := c.DeleteModelVersion(ctx, "ws", "m", 2, false); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("delete aliased: %v", err)
	}
	if err := c.DeleteModelAlias(ctx, "ws", "m", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModelVersion(ctx, "ws", "m", 2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetModelVersion(ctx, "ws", "m", hub.VersionRef{Version: 2}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("deleted version: %v", err)
	}
}
