// Package fpgabench measures the FPGA path against ONNX Runtime on the CPU,
// with the emulated card (package fpga/emu) served in-process on a Unix
// socket and reached through the real shim (package fpga):
//
//	go run ./testbench/cmd/bench fpga [--json] [--duration 2s]
//
// It reports, for an MLP 64-128-10 (the size of the sample digits model):
//
//   - device_us_per_inference: the card's modelled time (cycles / clock)
//     for one single-sample request;
//   - shim_overhead_us: p50 wall time of one submitted job (input copy,
//     start, wait, output copy: what the backend does per inference) through
//     the shim and the Unix socket with a one-instruction program — what
//     the host stack costs around the device;
//   - fpga_run_p50_us: p50 wall time of a single-sample backend Run
//     (quantize, copies, kernel in the emulator, dequantize);
//   - cpu_ort_us_per_inference: p50 of ONNX Runtime on the same model;
//   - emulator_inferences_per_sec: samples per second through the backend
//     with 32-sample requests (the emulator computes on the host CPU, so
//     this measures the emulator, not the card).
//
// It asserts nothing.
package fpgabench
