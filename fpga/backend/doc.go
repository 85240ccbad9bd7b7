// Package backend is the FPGA scoring backend: a scoring.Runner that runs
// the device prefix of a compiled model (package fpga/compiler) on a card
// through the shim (package fpga) and the CPU suffix with ONNX Runtime
// (package scoring/ort).
//
// On a recoverable device fault (reset, timeout, DMA error, lost handle)
// Run resets the card, reloads the program, reallocates its buffers and
// retries once. If the card stays down — or is lost — Run fails with an
// error wrapping scoring.ErrBackend and the device error, or, with
// Config.FallbackCPU, runs the whole model with ONNX Runtime instead.
//
// Each device pass is one fpga.Job (input copy, kernel, output copy)
// submitted with Device.Submit, with buffers reused across Runs.
//
// A Runner owns its device buffers and program on the card; it does not
// own the *fpga.Device (the caller closes it after the Runner).
package backend
