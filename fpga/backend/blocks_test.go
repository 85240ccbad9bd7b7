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
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/scoring"
)

// TestWeightColumnBlocks runs layers whose weights do not fit the
// scratchpad at once: the compiler streams them in column blocks.
func TestWeightColumnBlocks(t *testing.T) {
	b := &builder{g: &onnx.Graph{Name: "blocks"}, rng: rand.New(rand.NewPCG(21, 22))}
	x := b.node("Conv", []string{"x", b.init("w1", []int64{40, 3, 3, 3}, -0.4, 0.4), b.init("b1", []int64{40}, -0.1, 0.1)}, "conv", ints("pads", 1, 1, 1, 1))
	x = b.node("Relu", []string{x}, "relu")
	x = b.node("Flatten", []string{x}, "flat")
	b.node("Gemm", []string{x, b.init("w2", []int64{40 * 4 * 4, 70}, -0.05, 0.05), b.init("b2", []int64{70}, -0.1, 0.1)}, "y")
	b.g.Inputs = []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{{Value: -1, Param: "n"}, {Value: 3}, {Value: 4}, {Value: 4}}}}
	b.g.Outputs = []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{{Value: -1, Param: "n"}, {Value: 70}}}}
	model, err := (&onnx.Model{IRVersion: 8, Opsets: []onnx.OpsetImport{{Version: 13}}, Graph: b.g}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Batch 2: activations 2·2·640 = 2560 bytes and patches 16·27 = 432
	// leave 21,488 of 24,480 bytes for weights: the conv's 27×40 fit, the
	// dense layer's 640×70 = 44,800 go in column blocks of 32, 32 and 6.
	_, dev := startEmulator(t, emu.Config{SPADBytes: 4000 + 640*32})
	rng := rand.New(rand.NewPCG(23, 24))
	var calib [][]float32
	for i := 0; i < 16; i++ {
		s := make([]float32, 3*4*4)
		for j := range s {
			s[j] = float32(rng.Float64()*2 - 1)
		}
		calib = append(calib, s)
	}
	ctx := context.Background()
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{Batch: 2, RequireFull: true}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := isa.Decode(r.Artifact().Image)
	if err != nil {
		t.Fatal(err)
	}
	weightLoads := strings.Count(p.Disassemble(), "LOAD    spad[") - 1 // minus the input load
	if weightLoads != 4 {
		t.Fatalf("%d weight loads, want the layers split into column blocks:\n%s", weightLoads, p.Disassemble())
	}
	var xs []float32
	for i := 0; i < 3; i++ {
		xs = append(xs, calib[i]...)
	}
	in := []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: []int64{3, 3, 4, 4}, Data: xs}}
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
	t.Logf("%d weight block loads; max abs error %.4g of range %.4g (%.2f%%)", weightLoads, maxErr, maxRef, 100*maxErr/maxRef)
	if maxErr > 0.05*maxRef {
		t.Errorf("max abs error %g exceeds 5%% of %g", maxErr, maxRef)
	}
}
