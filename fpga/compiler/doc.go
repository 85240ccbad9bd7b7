// Package compiler lowers an ONNX graph to a program for Atelier's int8
// inference card (package fpga/isa) with post-training quantization, and
// splits the graph between the card and the CPU.
//
// Supported on the device, as one chain from the graph's first input:
// leading Mul, Div, Add and Sub with constants (folded into the host's
// input quantization), Gemm and MatMul with constant weights, Add of a constant
// per-channel bias after them or after Conv, Relu after them, Conv (2-D,
// group 1, strides, pads, dilations, auto_pad), BatchNormalization folded
// into the preceding Conv, MaxPool and AveragePool (2-D),
// and Flatten or Reshape to [batch, features]. The longest such prefix
// runs on the card; the rest of the graph becomes a new ONNX model run on
// the CPU with ONNX Runtime. Artifact.Unsupported names the nodes that
// stopped the device part, and Options.RequireFull refuses a split.
//
// Quantization is symmetric int8 with zero point 0: per-output-channel
// weight scales (max |w| / 127), per-tensor activation scales calibrated
// as max |x| / 127 over sample inputs run through a float64 reference of
// the same layers, int32 biases, and requantization by a per-channel
// fixed-point multiplier and shift rounded half away from zero. The last
// device layer's int32 accumulators go to the host unrequantized. Image
// tensors live on the card in HWC order; the host plan transposes.
//
// Compile is deterministic; with Options.CacheDir it caches artifacts on
// disk by (model digest, calibration, device info, compiler version,
// options). It does not talk to a device (package fpga/backend does).
package compiler
