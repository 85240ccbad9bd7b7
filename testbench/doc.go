// Package testbench holds Atelier's end-to-end environments, benchmarks and
// sample programs. Its sub-packages each own one benchmark (run through
// `go run ./testbench/cmd/bench NAME`); testbench/sample holds the sample
// training program and its data set.
package testbench
