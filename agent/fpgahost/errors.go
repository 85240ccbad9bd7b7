package fpgahost

import "errors"

var (
	// ErrDevice: the card could not be opened or read.
	ErrDevice = errors.New("fpga device unavailable")
	// ErrDeviceDown: a request failed on the card after a reset and a
	// retry, and the deployment does not allow the CPU fallback.
	ErrDeviceDown = errors.New("fpga device down")
	// ErrNoCalibration: no calibration samples are configured for a
	// deployment's model.
	ErrNoCalibration = errors.New("no calibration samples")
	// ErrInvalidConfig: a Config field is wrong.
	ErrInvalidConfig = errors.New("invalid fpga host config")
)
