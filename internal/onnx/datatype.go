package onnx

import "strconv"

// DataType is the element type of a tensor (TensorProto.DataType).
type DataType int32

// Tensor element types, with the numbers onnx.proto assigns them.
const (
	Undefined  DataType = 0
	Float      DataType = 1
	Uint8      DataType = 2
	Int8       DataType = 3
	Uint16     DataType = 4
	Int16      DataType = 5
	Int32      DataType = 6
	Int64      DataType = 7
	String     DataType = 8
	Bool       DataType = 9
	Float16    DataType = 10
	Double     DataType = 11
	Uint32     DataType = 12
	Uint64     DataType = 13
	Complex64  DataType = 14
	Complex128 DataType = 15
	BFloat16   DataType = 16
)

var dataTypeNames = [...]string{
	Undefined:  "UNDEFINED",
	Float:      "FLOAT",
	Uint8:      "UINT8",
	Int8:       "INT8",
	Uint16:     "UINT16",
	Int16:      "INT16",
	Int32:      "INT32",
	Int64:      "INT64",
	String:     "STRING",
	Bool:       "BOOL",
	Float16:    "FLOAT16",
	Double:     "DOUBLE",
	Uint32:     "UINT32",
	Uint64:     "UINT64",
	Complex64:  "COMPLEX64",
	Complex128: "COMPLEX128",
	BFloat16:   "BFLOAT16",
}

// String returns the ONNX name of the type ("FLOAT", "INT64", ...), or
// "DataType(N)" for numbers this package does not know.
func (d DataType) String() string {
	if d >= 0 && int(d) < len(dataTypeNames) {
		return dataTypeNames[d]
	}
	return "DataType(" + strconv.Itoa(int(d)) + ")"
}

// Known reports whether the package can decode and encode tensors of type d.
func (d DataType) Known() bool { return d > Undefined && d <= BFloat16 }

// elemSize is the raw_data size of one element in bytes (0 for STRING).
// COMPLEX types count as two float elements, so their size is that of the
// component.
func (d DataType) elemSize() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16, Float16, BFloat16:
		return 2
	case Float, Int32, Uint32, Complex64:
		return 4
	case Int64, Double, Uint64, Complex128:
		return 8
	}
	return 0
}

// components is the number of Data entries per tensor element.
func (d DataType) components() int {
	if d == Complex64 || d == Complex128 {
		return 2
	}
	return 1
}
