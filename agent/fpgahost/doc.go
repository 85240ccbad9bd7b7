// Package fpgahost is the serving side of an FPGA agent: it owns the
// connection to the host's card (through the shim, package fpga), opens
// each deployment's model as a scoring.Runner over the card (package
// fpga/backend: compile with a cache, program, run the device prefix and
// the CPU suffix), and keeps per-deployment device totals for the agent's
// telemetry (it implements agent.DeviceReporter).
//
// # Lifecycle
//
// Open connects to the card at Config.Target (a missing socket or a card
// that does not answer is an error wrapping ErrDevice) and reads its info.
// Host.Open is an edge.Config.Open: the edge agent's Server calls it for
// every deployment it loads and puts the runner in its registry; the
// registry closes runners (Runner.Close releases the program and buffers
// on the card, not the card). Host.Close closes the card connection after
// every runner is closed.
//
// # Faults
//
// On a device fault the backend resets the card, reprograms it and retries
// the request once; when the connection to the card is lost (the card or
// its driver restarted), the runner reconnects and tries once more, and
// the backend reprograms the card it finds. If the card stays down, the
// request either fails with
// an error wrapping ErrDeviceDown and scoring.ErrBackend (HTTP 500, the
// message says what failed and that the CPU fallback is off) or, when the
// deployment allows it (RuntimeOptions.allow_cpu_fallback, or
// Config.FallbackCPU for every deployment), is scored on the CPU with ONNX
// Runtime over the whole model. DeviceStats counts faults and fallbacks per
// deployment and names the backend that served the last request.
//
// # Calibration
//
// int8 quantization needs sample inputs. The deployment protocol does not
// carry them, so the host reads them from the files in Config.Calibration,
// keyed by registered model name ("" is the default for every other
// model): CSV, one sample per line (a trailing label column is ignored),
// or an ONNX TensorProto (see compiler.ReadCalibration).
//
// This package does not download models, keep desired state or talk to the
// hub (package agent does), and it does not serve HTTP (package scoring
// does, through agent/edge).
package fpgahost
