// Package onnxtest builds small, deterministic ONNX models for tests in
// other packages, together with their expected outputs computed in pure Go.
//
// It does not run models; tests feed the models to ONNX Runtime themselves.
package onnxtest
