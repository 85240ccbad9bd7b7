package backend_test

import (
	"context"
	"testing"

	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
)

// benchRun measures backend Runs of n samples of an MLP 64-128-10 (the
// fpgabench model) compiled for batch n.
func benchRun(b *testing.B, n int) {
	_, dev := startEmulator(b, emu.Config{})
	model := onnxtest.MLP(64, []int{128}, 10, 1)
	calib := split(randRows(1, 64, 64), 64)
	r, err := backend.Open(context.Background(), dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{Batch: n}, WorkDir: b.TempDir()}, quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{int64(n), 64}, Data: randRows(2, n, 64)}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N)/float64(n), "µs/sample")
}

func BenchmarkRun1(b *testing.B)  { benchRun(b, 1) }
func BenchmarkRun32(b *testing.B) { benchRun(b, 32) }
