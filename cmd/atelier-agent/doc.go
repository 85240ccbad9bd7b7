// Command atelier-agent is Atelier's agent: `atelier-agent run` is the
// daemon that enrolls with a hub and serves the deployments it is given,
// `atelier-agent score` serves ONNX models over HTTP without a hub (the
// entry point of scoring containers), and `atelier-agent fpga` holds the
// FPGA device emulator and compiler. See docs/agent-cli.md.
package main
