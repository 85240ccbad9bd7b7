package scoring

import "context"

// Runner is a loaded model on some backend: ONNX Runtime (package
// scoring/ort) or, later, the FPGA. The registry owns a Runner once it is
// loaded and calls Close when the version is unloaded and drained.
//
// Run must be safe for concurrent use. Its inputs are validated and in
// Signature().Inputs order; it returns one tensor per Signature().Outputs,
// in that order. Run must not keep or modify the input slices after it
// returns. It should return early with ctx.Err() when ctx is done if the
// backend can stop.
type Runner interface {
	Signature() Signature
	Run(ctx context.Context, inputs []Tensor) ([]Tensor, error)
	Close() error
}
