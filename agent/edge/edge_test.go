package edge

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

const (
	in, out = 4, 3
)

var hidden = []int{8}

// writeMLP writes onnxtest.MLP with seed to dir and returns its path.
func writeMLP(t *testing.T, dir string, seed int64) string {
	t.Helper()
	p := filepath.Join(dir, "mlp-"+string(rune('a'+seed))+".onnx")
	if err := os.WriteFile(p, onnxtest.MLP(in, hidden, out, seed), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var x = []float32{0.5, -1, 2, 0.25}

// infer runs x through the current version of name and checks the answer
// against the pure-Go reference of the MLP with seed.
func infer(t *testing.T, reg *scoring.Registry, name string, seed int64) {
	t.Helper()
	v, err := reg.Acquire(name, "")
	if err != nil {
		t.Fatalf("acquire %s: %v", name, err)
	}
	defer v.Release()
	res, err := v.Infer(context.Background(), []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, in}, Data: x}})
	if err != nil {
		t.Fatalf("infer %s: %v", name, err)
	}
	got := res[0].Data.([]float32)
	want := onnxtest.MLPOutput(in, hidden, out, seed, x)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Fatalf("%s output %v, want %v (the model of seed %d)", name, got, want, seed)
		}
	}
}

func newServer(t *testing.T) (*Server, *scoring.Registry) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	s, err := New(Config{}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func versions(t *testing.T, reg *scoring.Registry, name string) []string {
	t.Helper()
	info, err := reg.Model(name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Versions
}

func TestLoadSwapFailUnload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, reg := newServer(t)
	v1, v2 := writeMLP(t, dir, 1), writeMLP(t, dir, 2)

	if err := s.Load(ctx, spec("digits", 1), v1); err != nil {
		t.Fatal(err)
	}
	infer(t, reg, "digits", 1)

	if err := s.Load(ctx, spec("digits", 2), v2); err != nil {
		t.Fatal(err)
	}
	infer(t, reg, "digits", 2)
	if got := versions(t, reg, "digits"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("versions after swap %v, want [2] (v1 unloaded)", got)
	}

	// A corrupt file fails; version 2 keeps serving.
	bad := filepath.Join(dir, "corrupt.onnx")
	if err := os.WriteFile(bad, []byte("this is not an onnx model"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.Load(ctx, spec("digits", 3), bad)
	if err == nil {
		t.Fatal("Load of a corrupt file succeeded")
	}
	t.Logf("corrupt file: %v", err)
	infer(t, reg, "digits", 2)
	if got := versions(t, reg, "digits"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("versions after a failed swap %v, want [2]", got)
	}

	// The same version number with another file is swapped in too.
	if err := s.Load(ctx, spec("digits", 2), v1); err != nil {
		t.Fatal(err)
	}
	infer(t, reg, "digits", 1)
	if got := versions(t, reg, "digits"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("versions after reloading version 2 %v, want [2]", got)
	}

	// A second deployment is independent.
	if err := s.Load(ctx, spec("other", 7), v2); err != nil {
		t.Fatal(err)
	}
	infer(t, reg, "other", 2)

	if err := s.Unload(ctx, "digits"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Acquire("digits", ""); !errors.Is(err, scoring.ErrModelNotFound) {
		t.Errorf("acquire after unload: %v, want ErrModelNotFound", err)
	}
	infer(t, reg, "other", 2)
	if err := s.Unload(ctx, "digits"); err != nil {
		t.Errorf("second unload: %v, want nil (no-op)", err)
	}
}

func TestLoadCorruptNewDeployment(t *testing.T) {
	s, reg := newServer(t)
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(bad, []byte{0x08, 0x01, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Load(context.Background(), spec("d", 1), bad); err == nil {
		t.Fatal("Load of a corrupt file succeeded")
	}
	if len(reg.Models()) != 0 {
		t.Errorf("registry holds %v after a failed load, want nothing", reg.Models())
	}
}

func spec(name string, version uint32) *agentv1.DeploymentSpec {
	return &agentv1.DeploymentSpec{Name: name, Model: &agentv1.ModelRef{Name: name, Version: version}}
}
