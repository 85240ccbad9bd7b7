// Package agentbench measures the real edge agent's resident memory, idle
// and serving the sample model, beside the floor of ONNX Runtime alone
// (issue 4: under 20 MiB idle; Greengrass needs 96 MiB, KubeEdge's
// edgecore about 70).
//
//	go run ./testbench/cmd/bench agent [--requests 1000] [--concurrency 4] [--settle 5s] [--json]
//
// Run builds ./cmd/atelier, ./cmd/atelier-agent and ./testbench/cmd/ortfloor
// into a temporary directory (no -race: the race detector would inflate
// what is measured), trains the digits sample model with its defaults
// (sample.Train: the same program and data the demo uses), starts
// `atelier hub serve` on loopback with random ports, creates a workspace,
// registers the model, creates a join token and starts
// `atelier-agent run --listen 127.0.0.1:0`, which enrolls. Once the hub
// shows the agent online, and after --settle, it reads the agent's
// /proc/PID/status (agent_idle_rss_mib) and whether /proc/PID/maps has
// libonnxruntime mapped (ort_mapped_idle). It then deploys the model to
// the agent, waits until the hub shows the target serving and --settle,
// reads agent_loaded_rss_mib (the model loaded, no request yet), sends
// --requests infer requests of one held-out row each
// (/v2/models/digits/infer, --concurrency at a time; every answer must be
// a 200, and the correct ones are counted), waits --settle and reads the
// agent's memory again: agent_serving_rss_mib and agent_peak_rss_mib
// (VmHWM, the most it ever held). Last it runs ortfloor, a process that
// only loads ONNX Runtime and the same model through scoring/ort and runs
// one inference, and reads its memory after --settle: ort_floor_rss_mib.
// agent_serving_overhead_mib is serving minus floor. Every process is
// stopped with SIGTERM and waited for; the temporary directory is removed
// unless --dir names one.
//
// Memory is VmRSS from /proc/PID/status, split into RssAnon (heap,
// stacks) and RssFile (the binary and shared libraries: pages another
// process mapping the same file would share). It does not measure
// proportional set size (a page shared with another process counts in
// full), virtual size, the memory of the containerd or FPGA runtimes, a
// model larger than the sample, a long-running agent (its Go heap after
// hours of telemetry), or on another architecture; and it runs on this
// machine's loopback with the hub beside the agent, not on an edge device.
// It needs Linux (/proc), the go tool, and ONNX Runtime installed by
// `make setup`, and must be run from inside the module's tree. It asserts
// nothing.
package agentbench
