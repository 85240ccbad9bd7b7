// Command train trains a small neural network on the UCI handwritten digits
// data and exports it as ONNX. It is Atelier's sample training program: it
// reports parameters and metrics with the ::param and ::metric line protocol
// on stdout and writes its model to outputs/. See README.md.
package main
