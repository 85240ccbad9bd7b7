// Package scoring turns loaded models into an HTTP scoring endpoint.
//
// It owns the tensor and signature types, request validation, the JSON
// codecs of the Open Inference Protocol v2 and of the Azure-ML-style /score
// route, dynamic batching with a bounded queue, the multi-model,
// multi-version Registry with hot swap, the HTTP Server (v2 REST, /score,
// /swagger.json, /metrics, API keys, hardening) and its Prometheus metrics.
//
// Lifecycle: build a Registry, Load Runners into it (a Runner is a model on
// a backend; package scoring/ort opens ONNX files with ONNX Runtime), wrap
// it in a Server and Serve on a listener until the context ends.
//
// It does not open model files or talk to ONNX Runtime itself (that is
// scoring/ort, and the FPGA backend later), does not download or verify
// models (the agent does), and does not speak TLS (a future Server option).
package scoring
