package ort

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/atelier-ml/atelier/scoring"
)

const nodeDir = "/usr/share/libonnx-testdata/data/node/"

func TestOpenReadsSignatureAndRuns(t *testing.T) {
	r, err := Open(nodeDir+"test_relu/model.onnx", Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sig := r.Signature()
	if len(sig.Inputs) != 1 || len(sig.Outputs) != 1 {
		t.Fatalf("signature %+v, want 1 input, 1 output", sig)
	}
	in := sig.Inputs[0]
	if in.Name != "x" || in.DataType != scoring.Float32 || len(in.Shape) != 3 {
		t.Fatalf("input %v, want x FP32 rank 3", in)
	}
	n := 1
	for _, d := range in.Shape {
		n *= int(d)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i%7) - 3
	}
	out, err := r.Run(context.Background(), []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: in.Shape, Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	got := out[0].Data.([]float32)
	for i, v := range data {
		want := max(v, 0)
		if got[i] != want {
			t.Fatalf("relu[%d] = %v, want %v", i, got[i], want)
		}
	}
	if out[0].Name != sig.Outputs[0].Name {
		t.Errorf("output name %q, want %q", out[0].Name, sig.Outputs[0].Name)
	}
}

func TestOpenMissingFile(t *testing.T) {
	if _, err := Open(t.TempDir()+"/nope.onnx", Config{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("Open(missing) succeeded")
	}
}

func TestOpenUnsupportedType(t *testing.T) {
	// test_strnormalizer_* take string tensors.
	_, err := Open(nodeDir+"test_strnormalizer_export_monday_casesensintive_lower/model.onnx", Config{}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, scoring.ErrUnsupported) {
		t.Fatalf("Open(string model) = %v, want ErrUnsupported", err)
	}
}

func TestRunCanceledContext(t *testing.T) {
	r, err := Open(nodeDir+"test_relu/model.onnx", Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Run(ctx, r.Signature().ZeroInputs()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run(canceled) = %v, want context.Canceled", err)
	}
}

func TestSessionOptionsSpinningOff(t *testing.T) {
	if _, err := Open(nodeDir+"test_relu/model.onnx", Config{}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err) // initializes ONNX Runtime
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{{Config{}, "0"}, {Config{Spinning: true}, "1"}} {
		opts, err := sessionOptions(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
			got, err := opts.GetSessionConfigEntry(key)
			if err != nil || got != c.want {
				t.Errorf("Spinning=%v: %s = %q, %v; want %q", c.cfg.Spinning, key, got, err, c.want)
			}
		}
		opts.Destroy()
	}
}
