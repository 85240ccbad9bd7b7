// Package ort runs ONNX models with ONNX Runtime: it is the CPU backend
// behind scoring.Runner.
//
// Open initializes ONNX Runtime through internal/ortlib (once per process),
// reads the model's inputs and outputs, and creates one session tuned for
// small CPU devices: intra- and inter-op threads configurable (1 each by
// default on machines with at most 2 cores), thread spinning off, all graph
// optimizations on. A Runner is safe for concurrent use: ONNX Runtime
// sessions allow concurrent Run calls.
//
// It does not validate requests (scoring.Signature does), batch, or warm up
// (the scoring.Registry does both for every backend).
package ort
