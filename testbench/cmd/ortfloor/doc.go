// Command ortfloor is the memory floor of serving a model: a process that
// only loads ONNX Runtime (package internal/ortlib, through scoring/ort)
// and one model, runs one inference (the same all-ones warm-up the
// scoring registry runs when it loads a model), prints "ready" and waits
// for SIGTERM or SIGINT. Nothing else runs: no agent, no MQTT, no HTTP.
// The agent bench (testbench/agentbench) reads its VmRSS from /proc while
// it waits, beside the agent's:
//
//	go run ./testbench/cmd/ortfloor --model model.onnx
//
// It is a measuring helper, not a tool: it reports nothing itself.
package main
