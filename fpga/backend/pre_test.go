package backend_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/scoring"
)

// TestInputNormalizationFolds checks leading elementwise arithmetic with
// constants (image normalization, per-feature scaling, c − x) folded into
// the host's input quantization.
func TestInputNormalizationFolds(t *testing.T) {
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	cases := []struct {
		name  string
		input []int64 // per-sample dims
		build func(b *builder) (string, []onnx.Dim)
	}{
		{"image mean/std per channel", []int64{3, 5, 5}, func(b *builder) (string, []onnx.Dim) {
			x := b.node("Sub", []string{"x", b.init("mean", []int64{1, 3, 1, 1}, 0.2, 0.6)}, "centered")
			x = b.node("Div", []string{x, b.init("std", []int64{3, 1, 1}, 0.2, 0.4)}, "normalized")
			x = b.node("Conv", []string{x, b.init("w", []int64{4, 3, 3, 3}, -0.3, 0.3)}, "conv")
			x = b.node("Relu", []string{x}, "relu")
			x = b.node("Flatten", []string{x}, "flat")
			b.node("Gemm", []string{x, b.init("fc", []int64{4 * 3 * 3, 5}, -0.2, 0.2)}, "y")
			return "y", []onnx.Dim{{Value: 5}}
		}},
		{"per-feature scale, offset and constant minus x", []int64{12}, func(b *builder) (string, []onnx.Dim) {
			x := b.node("Mul", []string{b.init("k", []int64{12}, -2, 2), "x"}, "scaled")
			x = b.node("Add", []string{x, b.init("off", []int64{1, 12}, -1, 1)}, "shifted")
			x = b.node("Sub", []string{b.init("c", nil, 0.5, 0.5), x}, "flipped")
			b.node("MatMul", []string{x, b.init("w", []int64{12, 6}, -0.5, 0.5)}, "y")
			return "y", []onnx.Dim{{Value: 6}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &builder{g: &onnx.Graph{Name: "pre"}, rng: rand.New(rand.NewPCG(31, 32))}
			out, outDims := c.build(b)
			dims := []onnx.Dim{{Value: -1, Param: "n"}}
			per := 1
			for _, d := range c.input {
				dims = append(dims, onnx.Dim{Value: d})
				per *= int(d)
			}
			b.g.Inputs = []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, HasShape: true, Shape: dims}}
			b.g.Outputs = []onnx.ValueInfo{{Name: out, ElemType: onnx.Float, HasShape: true, Shape: append([]onnx.Dim{{Value: -1, Param: "n"}}, outDims...)}}
			model, err := (&onnx.Model{IRVersion: 8, Opsets: []onnx.OpsetImport{{Version: 13}}, Graph: b.g}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(33, 34))
			var calib [][]float32
			var x []float32
			for i := 0; i < 20; i++ {
				s := make([]float32, per)
				for j := range s {
					s[j] = float32(rng.Float64())
				}
				calib = append(calib, s)
				if i < 4 {
					x = append(x, s...)
				}
			}
			r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{RequireFull: true}}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ops := strings.Join(r.Artifact().DeviceOps, "; ")
			if !strings.Contains(ops, "input transform") {
				t.Errorf("device ops %q do not fold the input arithmetic", ops)
			}
			in := []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: append([]int64{4}, c.input...), Data: x}}
			got, err := r.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			want := cpuRun(t, model, in)
			g, w := got[0].Data.([]float32), want[0].Data.([]float32)
			var maxErr, maxRef float64
			for i := range w {
				maxErr = math.Max(maxErr, math.Abs(float64(g[i]-w[i])))
				maxRef = math.Max(maxRef, math.Abs(float64(w[i])))
			}
			t.Logf("%s: max abs error %.4g of range %.4g (%.2f%%)", ops, maxErr, maxRef, 100*maxErr/maxRef)
			if maxErr > 0.05*maxRef {
				t.Errorf("max abs error %g exceeds 5%% of %g", maxErr, maxRef)
			}
		})
	}
}
