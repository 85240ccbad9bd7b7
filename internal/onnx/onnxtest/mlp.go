package onnxtest

import (
	"fmt"
	"math/rand/v2"

	"github.com/atelier-ml/atelier/internal/onnx"
)

// layer is one dense layer: y = x·W + B with W of shape [in, out].
type layer struct {
	in, out int
	w, b    []float32
}

// mlpLayers draws the weights for MLP deterministically from seed.
func mlpLayers(in int, hidden []int, out int, seed int64) []layer {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6f6e6e78)) // "onnx"
	sizes := append(append([]int{in}, hidden...), out)
	ls := make([]layer, len(sizes)-1)
	for i := range ls {
		l := layer{in: sizes[i], out: sizes[i+1]}
		l.w = make([]float32, l.in*l.out)
		l.b = make([]float32, l.out)
		for j := range l.w {
			l.w[j] = float32(rng.Float64()*2-1) / float32(l.in)
		}
		for j := range l.b {
			l.b[j] = float32(rng.Float64()*0.2 - 0.1)
		}
		ls[i] = l
	}
	return ls
}

// MLPModel returns the model that MLP encodes.
//
// It panics if a size is not positive: the arguments are test constants.
func MLPModel(in int, hidden []int, out int, seed int64) *onnx.Model {
	if in <= 0 || out <= 0 {
		panic(fmt.Sprintf("onnxtest.MLP: sizes must be positive, got in=%d out=%d", in, out))
	}
	for _, h := range hidden {
		if h <= 0 {
			panic(fmt.Sprintf("onnxtest.MLP: hidden sizes must be positive, got %v", hidden))
		}
	}
	g := &onnx.Graph{Name: "mlp"}
	x := "input"
	ls := mlpLayers(in, hidden, out, seed)
	for i, l := range ls {
		w, b := fmt.Sprintf("w%d", i), fmt.Sprintf("b%d", i)
		g.Initializers = append(g.Initializers,
			&onnx.Tensor{Name: w, DataType: onnx.Float, Dims: []int64{int64(l.in), int64(l.out)}, Data: l.w},
			&onnx.Tensor{Name: b, DataType: onnx.Float, Dims: []int64{int64(l.out)}, Data: l.b},
		)
		y := fmt.Sprintf("gemm%d", i)
		if i == len(ls)-1 {
			y = "output"
		}
		g.Nodes = append(g.Nodes, onnx.Node{Name: y, OpType: "Gemm", Inputs: []string{x, w, b}, Outputs: []string{y}})
		x = y
		if i < len(ls)-1 {
			y = fmt.Sprintf("relu%d", i)
			g.Nodes = append(g.Nodes, onnx.Node{Name: y, OpType: "Relu", Inputs: []string{x}, Outputs: []string{y}})
			x = y
		}
	}
	g.Inputs = []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, HasShape: true,
		Shape: []onnx.Dim{{Value: -1, Param: "batch"}, {Value: int64(in)}}}}
	g.Outputs = []onnx.ValueInfo{{Name: "output", ElemType: onnx.Float, HasShape: true,
		Shape: []onnx.Dim{{Value: -1, Param: "batch"}, {Value: int64(out)}}}}
	return &onnx.Model{
		IRVersion:    8,
		ProducerName: "atelier-onnxtest",
		Opsets:       []onnx.OpsetImport{{Version: 13}},
		Graph:        g,
	}
}

// MLP returns an encoded ONNX model: input "input" FLOAT ["batch", in],
// one Gemm+Relu per hidden layer, and output "output" FLOAT ["batch", out]
// from a final Gemm without activation. The first dimension is dynamic
// (dim_param "batch"). Weights are deterministic functions of seed. Opset
// 13, IR version 8.
//
// It panics if a size is not positive: the arguments are test constants.
func MLP(in int, hidden []int, out int, seed int64) []byte {
	b, err := MLPModel(in, hidden, out, seed).Encode()
	if err != nil {
		panic("onnxtest.MLP: " + err.Error()) // cannot happen: the model is built above
	}
	return b
}

// MLPOutput computes in pure Go what the model MLP(in, hidden, out, seed)
// returns for x, a row-major [batch, in] input. The result is [batch, out].
func MLPOutput(in int, hidden []int, out int, seed int64, x []float32) []float32 {
	if len(x)%in != 0 {
		panic(fmt.Sprintf("onnxtest.MLPOutput: %d input values is not a multiple of %d", len(x), in))
	}
	batch := len(x) / in
	ls := mlpLayers(in, hidden, out, seed)
	cur := x
	for i, l := range ls {
		next := make([]float32, batch*l.out)
		for r := 0; r < batch; r++ {
			for o := 0; o < l.out; o++ {
				s := l.b[o]
				for k := 0; k < l.in; k++ {
					s += cur[r*l.in+k] * l.w[k*l.out+o]
				}
				if i < len(ls)-1 && s < 0 {
					s = 0
				}
				next[r*l.out+o] = s
			}
		}
		cur = next
	}
	return cur
}
