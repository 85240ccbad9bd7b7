package backend_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/ortlib"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startEmulator serves an emulated card on a Unix socket in a temp dir and
// opens it through the shim.
func startEmulator(t testing.TB, cfg emu.Config) (*emu.Device, *fpga.Device) {
	t.Helper()
	dev, err := emu.NewDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "fpga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.ServeDevice(ctx, l, dev, quiet()) }()
	d, err := fpga.Open(context.Background(), "unix:"+sock, fpga.Config{}, quiet())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
	return dev, d
}

// cpuRun runs a model file with ONNX Runtime.
func cpuRun(t testing.TB, model []byte, in []scoring.Tensor) []scoring.Tensor {
	t.Helper()
	if _, err := ortlib.Init(""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ort.Open(path, ort.Config{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := r.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
