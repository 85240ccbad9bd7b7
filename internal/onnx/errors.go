package onnx

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformed means the bytes are not a well-formed ONNX protobuf
	// message: bad wire format, a field of the wrong wire type, a tensor
	// whose data length disagrees with its dims, a model without a graph.
	ErrMalformed = errors.New("malformed onnx data")
	// ErrExternalData means a tensor keeps its data in an external file,
	// which this package does not read.
	ErrExternalData = errors.New("onnx tensor uses external data")
	// ErrUnsupported means a well-formed feature this package does not
	// handle, such as a tensor data type it cannot normalize.
	ErrUnsupported = errors.New("unsupported onnx feature")
	// ErrInvalid is returned by the encoders when a value cannot be
	// written: a Tensor whose Data does not match its DataType or Dims, a
	// Model without a Graph.
	ErrInvalid = errors.New("invalid onnx value")
)

// DecodeError locates a decoding failure. It wraps one of the sentinel
// errors (usually ErrMalformed), so errors.Is works on it.
type DecodeError struct {
	Message string // protobuf message being decoded, e.g. "TensorProto"
	Field   string // field name, e.g. "dims"; empty for message-level errors
	Offset  int    // byte offset in the input where the problem starts
	Reason  string // what was wrong and what was expected
	Err     error  // sentinel
}

func (e *DecodeError) Error() string {
	where := e.Message
	if e.Field != "" {
		where += "." + e.Field
	}
	return fmt.Sprintf("decode %s at offset %d: %s: %v", where, e.Offset, e.Reason, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }
