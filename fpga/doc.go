// Package fpga is the host-side driver shim for Atelier's int8 inference
// card: a Device API in the style of XRT and OPAE host runtimes (device
// info, program image, device buffers, host↔device copies, kernel start
// and wait with a deadline, reset), typed errors, and a pluggable Transport
// underneath.
//
// Open(ctx, "unix:/path") connects to a device served over the device
// protocol on a Unix socket — today the emulator (package fpga/emu, run by
// `atelier-agent fpga sim`). A real card's runtime would be another
// Transport behind the same Device API; docs/fpga.md explains how.
//
// Every call takes a context: its deadline bounds the call (and is passed
// to the device as the kernel wait deadline) and canceling it abandons the
// call. Errors are *DeviceError values wrapping one of the sentinels in
// errors.go, so callers test them with errors.Is: ErrTimeout, ErrDMA,
// ErrReset, ErrDeviceLost, ...
//
// Device.Submit runs one inference as a Job — copies in, kernel, wait,
// copies out — in one round trip when the transport implements Submitter
// (the Unix transport does, with a device of protocol revision 2,
// negotiated per connection) and as the separate calls otherwise; either
// way it fails exactly as the separate calls would.
//
// Host↔device copies are integrity-checked: the device returns a CRC-32 of
// the bytes as it stored or sent them and the transport compares it with
// its own; a mismatch is ErrDMA.
//
// This package does not compile models (package fpga/compiler) or run
// ONNX graphs (package fpga/backend).
package fpga
