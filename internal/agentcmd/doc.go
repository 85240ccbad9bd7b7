// Package agentcmd is the command tree of the atelier-agent binary:
// the cobra root and its subcommands. Today that is `score`, which serves
// ONNX models over HTTP (package scoring) and is the entry point of scoring
// containers; `run` (the agent daemon) and `fpga sim` come later.
//
// It parses flags, wires the parts and runs them until the context ends;
// it does not implement scoring, signal handling (cmd/atelier-agent owns
// the signal context) or the agent itself.
package agentcmd
