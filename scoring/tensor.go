package scoring

import (
	"fmt"
	"strings"
)

// DataType is a tensor element type. Its String form is the Open Inference
// Protocol v2 name ("FP32", "INT64", "BOOL", ...).
type DataType uint8

// The supported element types. Invalid is the zero value.
const (
	Invalid DataType = iota
	Float32
	Float64
	Int8
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Bool
)

var dataTypeNames = [...]string{
	Invalid: "INVALID",
	Float32: "FP32",
	Float64: "FP64",
	Int8:    "INT8",
	Int16:   "INT16",
	Int32:   "INT32",
	Int64:   "INT64",
	Uint8:   "UINT8",
	Uint16:  "UINT16",
	Uint32:  "UINT32",
	Uint64:  "UINT64",
	Bool:    "BOOL",
}

// String returns the v2 protocol name of t.
func (t DataType) String() string {
	if int(t) < len(dataTypeNames) {
		return dataTypeNames[t]
	}
	return fmt.Sprintf("DataType(%d)", uint8(t))
}

// ParseDataType parses a v2 protocol name; it is case-sensitive like the
// protocol. It returns Invalid and an error wrapping ErrInvalidInput for an
// unknown or unsupported name.
func ParseDataType(s string) (DataType, error) {
	for i, n := range dataTypeNames {
		if i != 0 && n == s {
			return DataType(i), nil
		}
	}
	if s == "BYTES" || s == "FP16" || s == "BF16" {
		return Invalid, fmt.Errorf("datatype %q: %w (supported: %s)", s, ErrUnsupported, supportedNames())
	}
	return Invalid, fmt.Errorf("datatype %q: %w: want one of %s", s, ErrInvalidInput, supportedNames())
}

func supportedNames() string { return strings.Join(dataTypeNames[1:], ", ") }

// JSONType is the JSON Schema type of an element ("number", "integer",
// "boolean"), used by the swagger document.
func (t DataType) JSONType() string {
	switch t {
	case Float32, Float64:
		return "number"
	case Bool:
		return "boolean"
	default:
		return "integer"
	}
}

// Tensor is a dense tensor. Data holds the elements in row-major order as
// the Go slice matching DataType: []float32, []float64, []int8, []int16,
// []int32, []int64, []uint8, []uint16, []uint32, []uint64 or []bool. A
// scalar has an empty Shape and one element. Tensors are values; the slices
// are shared, not copied, when a Tensor is copied.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     any
}

// Len returns the number of elements in t.Data, or -1 if Data is not a
// slice of a supported type.
func (t Tensor) Len() int { return dataLen(t.Data) }

func dataLen(d any) int {
	switch v := d.(type) {
	case []float32:
		return len(v)
	case []float64:
		return len(v)
	case []int8:
		return len(v)
	case []int16:
		return len(v)
	case []int32:
		return len(v)
	case []int64:
		return len(v)
	case []uint8:
		return len(v)
	case []uint16:
		return len(v)
	case []uint32:
		return len(v)
	case []uint64:
		return len(v)
	case []bool:
		return len(v)
	}
	return -1
}

// DataTypeOf returns the DataType of a data slice, or Invalid.
func DataTypeOf(d any) DataType {
	switch d.(type) {
	case []float32:
		return Float32
	case []float64:
		return Float64
	case []int8:
		return Int8
	case []int16:
		return Int16
	case []int32:
		return Int32
	case []int64:
		return Int64
	case []uint8:
		return Uint8
	case []uint16:
		return Uint16
	case []uint32:
		return Uint32
	case []uint64:
		return Uint64
	case []bool:
		return Bool
	}
	return Invalid
}

// MakeData allocates a zeroed data slice of type t with n elements. It
// returns nil for Invalid.
func MakeData(t DataType, n int) any {
	switch t {
	case Float32:
		return make([]float32, n)
	case Float64:
		return make([]float64, n)
	case Int8:
		return make([]int8, n)
	case Int16:
		return make([]int16, n)
	case Int32:
		return make([]int32, n)
	case Int64:
		return make([]int64, n)
	case Uint8:
		return make([]uint8, n)
	case Uint16:
		return make([]uint16, n)
	case Uint32:
		return make([]uint32, n)
	case Uint64:
		return make([]uint64, n)
	case Bool:
		return make([]bool, n)
	}
	return nil
}

// concatData appends the data slices in parts (all of one type) into one
// new slice.
func concatData(t DataType, parts []any) any {
	n := 0
	for _, p := range parts {
		n += dataLen(p)
	}
	switch t {
	case Float32:
		return concat[float32](parts, n)
	case Float64:
		return concat[float64](parts, n)
	case Int8:
		return concat[int8](parts, n)
	case Int16:
		return concat[int16](parts, n)
	case Int32:
		return concat[int32](parts, n)
	case Int64:
		return concat[int64](parts, n)
	case Uint8:
		return concat[uint8](parts, n)
	case Uint16:
		return concat[uint16](parts, n)
	case Uint32:
		return concat[uint32](parts, n)
	case Uint64:
		return concat[uint64](parts, n)
	case Bool:
		return concat[bool](parts, n)
	}
	return nil
}

func concat[T any](parts []any, n int) []T {
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.([]T)...)
	}
	return out
}

// sliceData returns d[lo:hi] for any supported slice type (sharing memory).
func sliceData(d any, lo, hi int) any {
	switch v := d.(type) {
	case []float32:
		return v[lo:hi:hi]
	case []float64:
		return v[lo:hi:hi]
	case []int8:
		return v[lo:hi:hi]
	case []int16:
		return v[lo:hi:hi]
	case []int32:
		return v[lo:hi:hi]
	case []int64:
		return v[lo:hi:hi]
	case []uint8:
		return v[lo:hi:hi]
	case []uint16:
		return v[lo:hi:hi]
	case []uint32:
		return v[lo:hi:hi]
	case []uint64:
		return v[lo:hi:hi]
	case []bool:
		return v[lo:hi:hi]
	}
	return nil
}

// numElements returns the product of shape, or -1 if a dimension is
// negative or the product overflows an int.
func numElements(shape []int64) int {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > (1<<53)/d {
			return -1
		}
		n *= d
	}
	return int(n)
}
