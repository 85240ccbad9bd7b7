// Package scorebench measures the scoring endpoint against raw ONNX
// Runtime: per model, the latency and throughput of direct Runner.Run
// calls, of one HTTP client (v2 infer, JSON) and of eight concurrent HTTP
// clients with dynamic batching. It runs everything in one process on
// loopback, with models from internal/onnx/onnxtest.
//
//	go run ./testbench/cmd/bench scoring [--json] [--duration 3s] [--cpuprofile FILE]
//
// It does not assert limits; it reports them beside the aims (HTTP adds at
// most 60 µs p50 over raw ONNX Runtime on the tiny model; eight clients reach
// at least the raw sequential throughput on the large model).
package scorebench
