// Package sample holds the end-to-end test of Atelier's sample training
// program.
//
// The program itself lives in train/, a self-contained Go module with no
// dependencies (so that `atelier run submit -- go run .` can run a copy of
// that directory anywhere): it trains an MLP on the UCI handwritten digits,
// prints ::param and ::metric lines and writes outputs/model.onnx and
// outputs/heldout.csv. This package's test runs it for real and checks the
// exported model with ONNX Runtime and package internal/onnx. CopyProgram
// gives other tests a fresh copy of the program to run.
package sample
