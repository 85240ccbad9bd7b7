// Package sample holds the end-to-end test of Atelier's sample training
// program, and helpers for tests and benchmarks that need its model.
//
// The program itself lives in train/, a self-contained Go module with no
// dependencies (so that `atelier run submit -- go run .` can run a copy of
// that directory anywhere): it trains an MLP on the UCI handwritten digits,
// prints ::param and ::metric lines and writes outputs/model.onnx and
// outputs/heldout.csv. This package's test runs it for real and checks the
// exported model with ONNX Runtime and package internal/onnx.
//
// CopyProgram gives other tests a fresh copy of the program to run, Train
// runs such a copy and names the model and held-out rows it wrote,
// ReadRows parses those rows and Scorer scores them through an Open
// Inference Protocol v2 endpoint (an agent's or the scoring server's).
// This package does not start servers or agents.
package sample
