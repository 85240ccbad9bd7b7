// Package onnx reads and writes ONNX model files (ModelProto) and single
// tensors (TensorProto) in pure Go.
//
// It decodes and encodes the protobuf wire format field by field with
// google.golang.org/protobuf/encoding/protowire; there is no generated code
// and no copy of onnx.proto. The Go types keep what Atelier needs to reason
// about a model — its graph, nodes, attributes, initializers and typed
// signature — and carry every field they do not model (doc strings, metadata
// properties, functions, sequence and map types, sparse tensors) as opaque
// bytes that Encode writes back, so Decode followed by Encode keeps a model
// loadable by ONNX Runtime.
//
// Decoding is strict: bytes that are not an ONNX model, a model without a
// graph, a tensor whose data disagrees with its dims or whose data lives in
// external files are refused with an error that wraps one of the sentinel
// errors in errors.go and names the message, field and byte offset. Decode
// never panics and allocates at most a small multiple of its input size.
//
// This package does not check that a graph is semantically valid (operator
// schemas, type inference) and does not run models; see package scoring for
// inference with ONNX Runtime.
//
// All functions are safe for concurrent use; decoded values share no memory
// with the input slice.
package onnx
