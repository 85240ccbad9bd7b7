package fleetsim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/testbench"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
)

func TestFleetRollsOutAndUpdates(t *testing.T) {
	h := testbench.StartHub(t, testbench.HubConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(h.URL)
	if _, err := c.CreateWorkspace(ctx, "sim", ""); err != nil {
		t.Fatal(err)
	}
	var versions []*hub.ModelVersion
	for seed := range int64(2) {
		b := onnxtest.MLP(64, []int{300}, 4, seed) // ~80 KiB: several chunks
		mv, err := c.RegisterModel(ctx, "sim", "m", bytes.NewReader(b), int64(len(b)), client.RegisterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, mv)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	f, err := fleetsim.Start(ctx, fleetsim.Config{Hub: h.URL, Agents: 5, DataDir: dir, Labels: map[string]string{"fleet": "sim"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if n := len(f.IDs()); n != 5 {
		t.Fatalf("%d agents, want 5", n)
	}
	agents, err := c.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 5 {
		t.Fatalf("hub lists %d agents, want 5", len(agents))
	}

	if _, err := c.CreateDeployment(ctx, "sim", hub.DeploymentCreate{Name: "d", Model: "m:1", Selector: map[string]string{"fleet": "sim"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitLoaded(ctx, "d", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateDeployment(ctx, "sim", "d", hub.DeploymentUpdate{Model: "m:2"}); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitLoaded(ctx, "d", 2); err != nil {
		t.Fatal(err)
	}
	// The hub sees every agent serving v2 from their reports.
	for {
		d, err := c.GetDeployment(ctx, "sim", "d")
		if err != nil {
			t.Fatal(err)
		}
		serving := 0
		for _, tg := range d.Targets {
			if tg.State == "serving" && tg.ModelVersion == 2 {
				serving++
			}
		}
		if serving == 5 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("hub: %d of 5 targets serving v2: %+v", serving, d.Targets)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Every agent holds the verified file under its own data directory.
	for i := range 5 {
		p := filepath.Join(dir, fmt.Sprintf("sim-%04d", i), "models", versions[1].SHA256)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("agent %d: %v", i, err)
		}
	}

	short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	if err := f.WaitLoaded(short, "d", 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a version never deployed: %v", err)
	}
}

func TestStartConfigErrors(t *testing.T) {
	for _, cfg := range []fleetsim.Config{{Hub: "http://127.0.0.1:1", DataDir: "x"}, {Agents: 1}} {
		if _, err := fleetsim.Start(context.Background(), cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, fleetsim.ErrInvalidConfig) {
			t.Errorf("%+v: error %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
