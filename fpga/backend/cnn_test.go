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

type builder struct {
	g   *onnx.Graph
	rng *rand.Rand
}

func (b *builder) init(name string, dims []int64, lo, hi float64) string {
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*b.rng.Float64())
	}
	b.g.Initializers = append(b.g.Initializers, &onnx.Tensor{Name: name, DataType: onnx.Float, Dims: dims, Data: v})
	return name
}

func (b *builder) node(op string, in []string, out string, attrs ...onnx.Attr) string {
	b.g.Nodes = append(b.g.Nodes, onnx.Node{Name: out, OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
	return out
}

func ints(name string, v ...int64) onnx.Attr {
	return onnx.Attr{Name: name, Type: onnx.AttrInts, Ints: v}
}
func intAttr(name string, v int64) onnx.Attr { return onnx.Attr{Name: name, Type: onnx.AttrInt, I: v} }

func imageModel(t *testing.T, withHead bool) []byte {
	b := &builder{g: &onnx.Graph{Name: "cnn"}, rng: rand.New(rand.NewPCG(11, 12))}
	x := "x"
	x = b.node("Div", []string{x, b.init("d", nil, 2, 2)}, "scaled")
	x = b.node("Conv", []string{x, b.init("w1", []int64{4, 2, 3, 3}, -0.5, 0.5), b.init("b1", []int64{4}, -0.1, 0.1)}, "conv1",
		ints("pads", 1, 1, 1, 1))
	x = b.node("BatchNormalization", []string{x, b.init("g", []int64{4}, 0.5, 1.5), b.init("beta", []int64{4}, -0.2, 0.2),
		b.init("mean", []int64{4}, -0.1, 0.1), b.init("var", []int64{4}, 0.5, 2)}, "bn1")
	x = b.node("Relu", []string{x}, "relu1")
	x = b.node("MaxPool", []string{x}, "pool1", ints("kernel_shape", 2, 2), ints("strides", 2, 2))
	out := onnx.ValueInfo{Name: "y", ElemType: onnx.Float, HasShape: true}
	if withHead {
		x = b.node("Conv", []string{x, b.init("w2", []int64{6, 4, 3, 3}, -0.3, 0.3)}, "conv2", ints("strides", 1, 1), ints("dilations", 1, 1), ints("pads", 1, 1, 1, 1))
		x = b.node("Relu", []string{x}, "relu2")
		x = b.node("AveragePool", []string{x}, "pool2", ints("kernel_shape", 2, 2), ints("strides", 1, 1), intAttr("count_include_pad", 0))
		x = b.node("Conv", []string{x, b.init("w2b", []int64{6, 6, 1, 1}, -0.5, 0.5)}, "conv3")
		x = b.node("MaxPool", []string{x}, "pool3", ints("kernel_shape", 1, 1))
		x = b.node("Relu", []string{x}, "relu_after_pool") // commutes with MaxPool: runs on conv3
		x = b.node("Flatten", []string{x}, "flat", intAttr("axis", 1))
		x = b.node("MatMul", []string{x, b.init("w3", []int64{6 * 3 * 2, 10}, -0.3, 0.3)}, "mm")
		x = b.node("Add", []string{x, b.init("b3", []int64{10}, -0.1, 0.1)}, "add")
		x = b.node("Relu", []string{x}, "relu3")
		b.node("Gemm", []string{x, b.init("w4", []int64{3, 10}, -0.5, 0.5), b.init("b4", []int64{3}, -0.1, 0.1)}, "y", intAttr("transB", 1))
		out.Shape = []onnx.Dim{{Value: -1, Param: "batch"}, {Value: 3}}
	} else {
		b.node("Sigmoid", []string{x}, "y")
		out.Shape = []onnx.Dim{{Value: -1, Param: "batch"}, {Value: 4}, {Value: 4}, {Value: 3}}
	}
	b.g.Inputs = []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{{Value: -1, Param: "batch"}, {Value: 2}, {Value: 8}, {Value: 6}}}}
	b.g.Outputs = []onnx.ValueInfo{out}
	m := &onnx.Model{IRVersion: 8, ProducerName: "fpga-test", Opsets: []onnx.OpsetImport{{Version: 13}}, Graph: b.g}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func TestConvNetAgainstORT(t *testing.T) {
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(13, 14))
	sample := func() []float32 {
		s := make([]float32, 2*8*6)
		for i := range s {
			s[i] = float32(rng.Float64()*4 - 2)
		}
		return s
	}
	var calib [][]float32
	for i := 0; i < 24; i++ {
		calib = append(calib, sample())
	}
	for _, c := range []struct {
		name     string
		head     bool
		full     bool
		wantOps  []string
		tolerate float64
	}{
		{"conv-bn-relu-pool-conv-avgpool-flatten-matmul-add-relu-gemm", true, true, []string{"conv+relu", "maxpool", "conv+relu", "avgpool", "conv+relu 6x3x2→6x3x2 (conv3)", "maxpool 6x3x2→6x3x2 (pool3, relu_after_pool)", "flatten", "dense+relu", "dense"}, 0.05},
		{"device image output into cpu sigmoid", false, false, []string{"conv+relu", "maxpool"}, 0.02},
	} {
		t.Run(c.name, func(t *testing.T) {
			model := imageModel(t, c.head)
			// Batch 4 with 6 samples: two kernel iterations, several samples in each.
			r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{RequireFull: c.full, Batch: 4}}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ops := strings.Join(r.Artifact().DeviceOps, "; ")
			for _, op := range c.wantOps {
				if !strings.Contains(ops, op) {
					t.Errorf("device ops %q lack %q", ops, op)
				}
			}
			var x []float32
			for i := 0; i < 5; i++ {
				x = append(x, calib[i]...)
			}
			x = append(x, sample()...) // one sample outside the calibration set
			in := []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: []int64{6, 2, 8, 6}, Data: x}}
			got, err := r.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			want := cpuRun(t, model, in)
			g, w := got[0].Data.([]float32), want[0].Data.([]float32)
			if len(g) != len(w) {
				t.Fatalf("%d outputs, want %d (shape %v vs %v)", len(g), len(w), got[0].Shape, want[0].Shape)
			}
			var maxErr, maxRef float64
			for i := range w {
				maxErr = math.Max(maxErr, math.Abs(float64(g[i]-w[i])))
				maxRef = math.Max(maxRef, math.Abs(float64(w[i])))
			}
			if b := r.Artifact().Plan.Batch; b != 4 {
				t.Errorf("plan batch %d, want 4", b)
			}
			t.Logf("device: %s; max abs error %.4g of output range %.4g (%.2f%%)", ops, maxErr, maxRef, 100*maxErr/maxRef)
			if maxErr > c.tolerate*maxRef {
				t.Errorf("max abs error %g exceeds %.0f%% of %g", maxErr, 100*c.tolerate, maxRef)
			}
		})
	}
}
