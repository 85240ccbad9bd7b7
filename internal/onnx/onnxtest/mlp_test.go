package onnxtest_test

import (
	"bytes"
	"math"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/internal/ortlib"
)

func TestMLPDeterministic(t *testing.T) {
	a := onnxtest.MLP(4, []int{8}, 3, 1)
	if !bytes.Equal(a, onnxtest.MLP(4, []int{8}, 3, 1)) {
		t.Fatal("MLP with the same seed produced different bytes")
	}
	if bytes.Equal(a, onnxtest.MLP(4, []int{8}, 3, 2)) {
		t.Fatal("MLP with different seeds produced the same bytes")
	}
}

func TestMLPSignature(t *testing.T) {
	m, err := onnx.Decode(onnxtest.MLP(5, []int{7, 6}, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if m.IRVersion != 8 || m.Opset() != 13 {
		t.Errorf("ir %d opset %d, want 8 and 13", m.IRVersion, m.Opset())
	}
	sig := m.Signature()
	if len(sig.Inputs) != 1 || len(sig.Outputs) != 1 {
		t.Fatalf("signature %+v, want one input and one output", sig)
	}
	in, out := sig.Inputs[0], sig.Outputs[0]
	if in.Name != "input" || in.ElemType != onnx.Float || len(in.Shape) != 2 || in.Shape[0].Param != "batch" || in.Shape[1].Value != 5 {
		t.Errorf("input %+v", in)
	}
	if out.Name != "output" || out.ElemType != onnx.Float || len(out.Shape) != 2 || !out.Shape[0].Dynamic() || out.Shape[1].Value != 2 {
		t.Errorf("output %+v", out)
	}
	if got := len(m.Graph.Nodes); got != 5 {
		t.Errorf("%d nodes, want 5 (3 Gemm, 2 Relu)", got)
	}
}

// TestMLPMatchesONNXRuntime runs MLP models in real ONNX Runtime and
// compares with the pure-Go forward pass.
func TestMLPMatchesONNXRuntime(t *testing.T) {
	if _, err := ortlib.Init(""); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in, out int
		hidden  []int
		batch   int
	}{
		{"no hidden", 3, 2, nil, 1},
		{"one hidden", 4, 3, []int{8}, 5},
		{"two hidden", 16, 10, []int{32, 12}, 7},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seed := int64(100 + i)
			model := onnxtest.MLP(c.in, c.hidden, c.out, seed)
			x := make([]float32, c.batch*c.in)
			for j := range x {
				x[j] = float32(math.Sin(float64(j))) * 2
			}
			want := onnxtest.MLPOutput(c.in, c.hidden, c.out, seed, x)
			sess, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"input"}, []string{"output"}, nil)
			if err != nil {
				t.Fatalf("ONNX Runtime refused the model: %v", err)
			}
			defer sess.Destroy()
			xt, err := ort.NewTensor(ort.NewShape(int64(c.batch), int64(c.in)), x)
			if err != nil {
				t.Fatal(err)
			}
			defer xt.Destroy()
			outs := []ort.Value{nil}
			if err := sess.Run([]ort.Value{xt}, outs); err != nil {
				t.Fatal(err)
			}
			defer outs[0].Destroy()
			yt := outs[0].(*ort.Tensor[float32])
			if s := yt.GetShape(); len(s) != 2 || s[0] != int64(c.batch) || s[1] != int64(c.out) {
				t.Fatalf("output shape %v, want [%d %d]", s, c.batch, c.out)
			}
			got := yt.GetData()
			for j := range want {
				if d := math.Abs(float64(got[j] - want[j])); d > 1e-5 {
					t.Fatalf("output[%d] = %g, Go forward pass says %g", j, got[j], want[j])
				}
			}
		})
	}
}
