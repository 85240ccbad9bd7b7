package scoring

import (
	"fmt"
	"slices"
	"strings"
)

// Dynamic marks a dimension of a TensorSpec that may take any size.
const Dynamic = -1

// TensorSpec describes one input or output of a model. A Shape entry of
// Dynamic (-1) accepts any size.
type TensorSpec struct {
	Name     string
	DataType DataType
	Shape    []int64
}

// String renders the spec as `name FP32[-1,4]`.
func (s TensorSpec) String() string {
	return fmt.Sprintf("%s %s%s", s.Name, s.DataType, shapeString(s.Shape))
}

func shapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}

// Signature lists a model's inputs and outputs in the order the backend
// expects them.
type Signature struct {
	Inputs  []TensorSpec
	Outputs []TensorSpec
}

// Batchable reports whether requests can be merged along the first
// dimension: every input and output has rank >= 1 and a dynamic first
// dimension.
func (s Signature) Batchable() bool {
	if len(s.Inputs) == 0 || len(s.Outputs) == 0 {
		return false
	}
	for _, l := range [][]TensorSpec{s.Inputs, s.Outputs} {
		for _, t := range l {
			if len(t.Shape) == 0 || t.Shape[0] != Dynamic {
				return false
			}
		}
	}
	return true
}

// InputIndex returns the position of the named input, or -1.
func (s Signature) InputIndex(name string) int {
	for i, t := range s.Inputs {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// OutputIndex returns the position of the named output, or -1.
func (s Signature) OutputIndex(name string) int {
	for i, t := range s.Outputs {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// Validate checks a request's tensors against the inputs and returns them
// in signature order. Each error wraps ErrInvalidInput and names the input,
// what arrived and what was expected. Validate does not copy data.
func (s Signature) Validate(in []Tensor) ([]Tensor, error) {
	out := make([]Tensor, len(s.Inputs))
	seen := make([]bool, len(s.Inputs))
	for _, t := range in {
		i := s.InputIndex(t.Name)
		if i < 0 {
			return nil, fmt.Errorf("input %q: %w: unknown input; the model's inputs are %s", t.Name, ErrInvalidInput, s.inputNames())
		}
		if seen[i] {
			return nil, fmt.Errorf("input %q: %w: given more than once", t.Name, ErrInvalidInput)
		}
		seen[i] = true
		if err := s.Inputs[i].check(t); err != nil {
			return nil, err
		}
		out[i] = t
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("input %q: %w: missing; want %s", s.Inputs[i].Name, ErrInvalidInput, s.Inputs[i])
		}
	}
	return out, nil
}

func (s Signature) inputNames() string {
	names := make([]string, len(s.Inputs))
	for i, t := range s.Inputs {
		names[i] = fmt.Sprintf("%q", t.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// check validates one tensor against the spec.
func (s TensorSpec) check(t Tensor) error {
	if t.DataType != s.DataType {
		return fmt.Errorf("input %q: %w: datatype %s, want %s", s.Name, ErrInvalidInput, t.DataType, s.DataType)
	}
	if got := DataTypeOf(t.Data); got != t.DataType {
		return fmt.Errorf("input %q: %w: data holds %s elements, datatype says %s", s.Name, ErrInvalidInput, got, t.DataType)
	}
	if len(t.Shape) != len(s.Shape) {
		return fmt.Errorf("input %q: %w: rank %d (shape %s), want rank %d (shape %s)", s.Name, ErrInvalidInput, len(t.Shape), shapeString(t.Shape), len(s.Shape), shapeString(s.Shape))
	}
	for d, n := range t.Shape {
		if n < 0 {
			return fmt.Errorf("input %q: %w: dimension %d is %d, want >= 0", s.Name, ErrInvalidInput, d, n)
		}
		if s.Shape[d] != Dynamic && s.Shape[d] != n {
			return fmt.Errorf("input %q: %w: dimension %d is %d, want %d (shape %s, want %s)", s.Name, ErrInvalidInput, d, n, s.Shape[d], shapeString(t.Shape), shapeString(s.Shape))
		}
	}
	want := numElements(t.Shape)
	if want < 0 {
		return fmt.Errorf("input %q: %w: shape %s is too large", s.Name, ErrInvalidInput, shapeString(t.Shape))
	}
	if got := dataLen(t.Data); got != want {
		return fmt.Errorf("input %q: %w: %d elements, shape %s needs %d", s.Name, ErrInvalidInput, got, shapeString(t.Shape), want)
	}
	return nil
}

// ZeroInputs returns zero-filled inputs for s with every dynamic dimension
// set to 1.
func (s Signature) ZeroInputs() []Tensor { return s.filledInputs(false) }

// OneInputs is ZeroInputs filled with ones (true for BOOL): the default
// warm-up request, which unlike zeros cannot divide an integer by zero.
func (s Signature) OneInputs() []Tensor { return s.filledInputs(true) }

func (s Signature) filledInputs(ones bool) []Tensor {
	in := make([]Tensor, len(s.Inputs))
	for i, spec := range s.Inputs {
		shape := slices.Clone(spec.Shape)
		for d := range shape {
			if shape[d] == Dynamic {
				shape[d] = 1
			}
		}
		data := MakeData(spec.DataType, numElements(shape))
		if ones {
			fillOnes(data)
		}
		in[i] = Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape, Data: data}
	}
	return in
}

func fillOnes(d any) {
	switch v := d.(type) {
	case []float32:
		fill(v, 1)
	case []float64:
		fill(v, 1)
	case []int8:
		fill(v, 1)
	case []int16:
		fill(v, 1)
	case []int32:
		fill(v, 1)
	case []int64:
		fill(v, 1)
	case []uint8:
		fill(v, 1)
	case []uint16:
		fill(v, 1)
	case []uint32:
		fill(v, 1)
	case []uint64:
		fill(v, 1)
	case []bool:
		fill(v, true)
	}
}

func fill[T any](s []T, v T) {
	for i := range s {
		s[i] = v
	}
}
