package compiler_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// convModel is Conv(2→3, 3x3, pad 1)+Relu → MaxPool 2x2 → Flatten → Gemm → Softmax.
func convModel(t *testing.T) []byte {
	g := &onnx.Graph{Name: "golden"}
	w := make([]float32, 3*2*3*3)
	for i := range w {
		w[i] = float32(i%7) / 7
	}
	fc := make([]float32, 3*2*2*4)
	for i := range fc {
		fc[i] = float32(i%5)/5 - 0.4
	}
	g.Initializers = []*onnx.Tensor{
		{Name: "w", DataType: onnx.Float, Dims: []int64{3, 2, 3, 3}, Data: w},
		{Name: "fc", DataType: onnx.Float, Dims: []int64{12, 4}, Data: fc},
	}
	g.Nodes = []onnx.Node{
		{Name: "conv", OpType: "Conv", Inputs: []string{"x", "w"}, Outputs: []string{"c"}, Attrs: []onnx.Attr{{Name: "pads", Type: onnx.AttrInts, Ints: []int64{1, 1, 1, 1}}}},
		{Name: "relu", OpType: "Relu", Inputs: []string{"c"}, Outputs: []string{"r"}},
		{Name: "pool", OpType: "MaxPool", Inputs: []string{"r"}, Outputs: []string{"p"}, Attrs: []onnx.Attr{{Name: "kernel_shape", Type: onnx.AttrInts, Ints: []int64{2, 2}}, {Name: "strides", Type: onnx.AttrInts, Ints: []int64{2, 2}}}},
		{Name: "flat", OpType: "Flatten", Inputs: []string{"p"}, Outputs: []string{"f"}},
		{Name: "gemm", OpType: "Gemm", Inputs: []string{"f", "fc"}, Outputs: []string{"logits"}},
		{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"y"}},
	}
	batch := onnx.Dim{Value: -1, Param: "n"}
	g.Inputs = []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{batch, {Value: 2}, {Value: 4}, {Value: 4}}}}
	g.Outputs = []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{batch, {Value: 4}}}}
	b, err := (&onnx.Model{IRVersion: 8, Opsets: []onnx.OpsetImport{{Version: 13}}, Graph: g}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenPrograms(t *testing.T) {
	cases := []struct {
		name  string
		model []byte
		n     int
		batch int
	}{
		{"mlp_40_70_3", onnxtest.MLP(40, []int{70}, 3, 1), 40, 4},
		{"conv_pool_flatten_gemm", convModel(t), 2 * 4 * 4, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := compiler.Compile(c.model, calib(8, c.n), info(), compiler.Options{Batch: c.batch}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			p, err := isa.Decode(a.Image)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("; device: " + strings.Join(a.DeviceOps, "; ") + "\n")
			b.WriteString("; cpu: " + strings.Join(a.Unsupported, "; ") + "\n")
			b.WriteString(p.Disassemble())
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("program differs from %s (run with -update if the change is intended):\n%s", path, b.String())
			}
		})
	}
}
