package scoring

import "errors"

// Error classes. Wrap them with context; the HTTP server maps each class to a
// status code (see statusOf in http.go).
var (
	// ErrInvalidInput: a request does not match the model's signature or is
	// not well-formed (400).
	ErrInvalidInput = errors.New("invalid input")
	// ErrModelNotFound: no such model or version is loaded (404).
	ErrModelNotFound = errors.New("model not found")
	// ErrQueueFull: the model's bounded queue is full; retry later (429).
	ErrQueueFull = errors.New("queue full")
	// ErrUnavailable: the model or server is draining or shutting down, or the
	// concurrency limit is reached; retry later (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrUnsupported: a model uses something the scoring path does not
	// support (a non-tensor input, a string or float16 element type, ...).
	ErrUnsupported = errors.New("unsupported")
	// ErrExists: a model version with that name is already loaded.
	ErrExists = errors.New("already loaded")
	// ErrBackend: the backend (ONNX Runtime, the FPGA) failed to run (500).
	ErrBackend = errors.New("backend error")
)
