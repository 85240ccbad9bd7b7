package compiler

import "errors"

var (
	// ErrUnsupportedModel: the model cannot be compiled at all (not ONNX,
	// no float input of known shape).
	ErrUnsupportedModel = errors.New("model not supported by the fpga compiler")
	// ErrPartial: Options.RequireFull is set and part of the graph would
	// run on the CPU.
	ErrPartial = errors.New("model does not map fully onto the device")
	// ErrCalibration: calibration samples are missing or do not match the
	// input.
	ErrCalibration = errors.New("bad calibration data")
)
