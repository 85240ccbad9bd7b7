package scoring

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	sig := Signature{
		Inputs: []TensorSpec{
			{Name: "x", DataType: Float32, Shape: []int64{Dynamic, 3}},
			{Name: "mask", DataType: Bool, Shape: []int64{Dynamic}},
		},
		Outputs: []TensorSpec{{Name: "y", DataType: Float32, Shape: []int64{Dynamic, 1}}},
	}
	x := Tensor{Name: "x", DataType: Float32, Shape: []int64{2, 3}, Data: make([]float32, 6)}
	mask := Tensor{Name: "mask", DataType: Bool, Shape: []int64{2}, Data: make([]bool, 2)}
	tests := []struct {
		name string
		in   []Tensor
		want string // "" means valid
	}{
		{"valid, reordered", []Tensor{mask, x}, ""},
		{"unknown", []Tensor{x, mask, {Name: "z", DataType: Float32, Shape: []int64{1}, Data: []float32{1}}}, `input "z": invalid input: unknown input; the model's inputs are ["x", "mask"]`},
		{"missing", []Tensor{x}, `input "mask": invalid input: missing; want mask BOOL[-1]`},
		{"duplicate", []Tensor{x, x, mask}, `input "x": invalid input: given more than once`},
		{"datatype", []Tensor{{Name: "x", DataType: Float64, Shape: []int64{2, 3}, Data: make([]float64, 6)}, mask}, `input "x": invalid input: datatype FP64, want FP32`},
		{"rank", []Tensor{{Name: "x", DataType: Float32, Shape: []int64{6}, Data: make([]float32, 6)}, mask}, `input "x": invalid input: rank 1 (shape [6]), want rank 2 (shape [-1,3])`},
		{"fixed dim", []Tensor{{Name: "x", DataType: Float32, Shape: []int64{3, 2}, Data: make([]float32, 6)}, mask}, `input "x": invalid input: dimension 1 is 2, want 3`},
		{"count", []Tensor{{Name: "x", DataType: Float32, Shape: []int64{2, 3}, Data: make([]float32, 5)}, mask}, `input "x": invalid input: 5 elements, shape [2,3] needs 6`},
		{"data type mismatch", []Tensor{{Name: "x", DataType: Float32, Shape: []int64{2, 3}, Data: make([]int32, 6)}, mask}, `data holds INT32 elements, datatype says FP32`},
		{"negative", []Tensor{{Name: "x", DataType: Float32, Shape: []int64{-2, 3}, Data: make([]float32, 6)}, mask}, `dimension 0 is -2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := sig.Validate(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if out[0].Name != "x" || out[1].Name != "mask" {
					t.Errorf("not in signature order: %s, %s", out[0].Name, out[1].Name)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("Validate = %v, want ErrInvalidInput", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestBatchableAndZeroInputs(t *testing.T) {
	sig := Signature{
		Inputs:  []TensorSpec{{Name: "x", DataType: Int64, Shape: []int64{Dynamic, 4, Dynamic}}},
		Outputs: []TensorSpec{{Name: "y", DataType: Float32, Shape: []int64{Dynamic}}},
	}
	if !sig.Batchable() {
		t.Error("dynamic first dims: not batchable")
	}
	z := sig.ZeroInputs()
	if got := z[0].Shape; len(got) != 3 || got[0] != 1 || got[1] != 4 || got[2] != 1 || z[0].Len() != 4 {
		t.Errorf("zero input shape %v len %d", got, z[0].Len())
	}
	if _, err := sig.Validate(z); err != nil {
		t.Errorf("zero inputs do not validate: %v", err)
	}
	sig.Outputs[0].Shape = []int64{4}
	if sig.Batchable() {
		t.Error("fixed output first dim: batchable")
	}
}
