package cli_test

import (
	"os"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

// cmdONNXMLP writes a small ONNX model for scripts:
//
//	onnxmlp OUT IN OUTPUTS SEED
//
// writes onnxtest.MLP(IN, [8], OUTPUTS, SEED): input "input" FLOAT
// [batch, IN], output "output" FLOAT [batch, OUTPUTS], opset 13.
func cmdONNXMLP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: onnxmlp OUT IN OUTPUTS SEED")
	}
	var n [3]int
	for i, s := range args[1:] {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			ts.Fatalf("onnxmlp: %q: want a whole number", s)
		}
		n[i] = v
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), onnxtest.MLP(n[0], []int{8}, n[1], int64(n[2])), 0o644))
}
