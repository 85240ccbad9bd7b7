package sample

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestInferBody: the body is a v2 infer request with the rows as one
// [N,64] FP32 input and the named outputs (none named: none asked for).
func TestInferBody(t *testing.T) {
	pixels := make([]float32, 128)
	for i := range pixels {
		pixels[i] = float32(i) / 8
	}
	for _, outputs := range [][]string{nil, {"label"}, {"label", "probabilities"}} {
		var req struct {
			Inputs []struct {
				Name     string    `json:"name"`
				DataType string    `json:"datatype"`
				Shape    []int     `json:"shape"`
				Data     []float32 `json:"data"`
			} `json:"inputs"`
			Outputs []struct {
				Name string `json:"name"`
			} `json:"outputs"`
		}
		body := InferBody(pixels, outputs...)
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("outputs %q: %v: %s", outputs, err, body)
		}
		if len(req.Inputs) != 1 || req.Inputs[0].Name != "pixels" || req.Inputs[0].DataType != "FP32" ||
			!slices.Equal(req.Inputs[0].Shape, []int{2, 64}) || !slices.Equal(req.Inputs[0].Data, pixels) {
			t.Fatalf("outputs %q: inputs %+v, want pixels FP32 [2,64] with the rows", outputs, req.Inputs)
		}
		var got []string
		for _, o := range req.Outputs {
			got = append(got, o.Name)
		}
		if !slices.Equal(got, outputs) {
			t.Errorf("outputs %q: asked for %q", outputs, got)
		}
	}
}
