// Package agentcmd is the command tree of the atelier-agent binary:
// the cobra root and its subcommands: `run`, the agent daemon (enrolls with
// a hub, then serves the deployments it is given; package agent and
// agent/edge), and `score`, which serves ONNX models over HTTP without a hub
// (package scoring) and is the entry point of scoring containers. The
// reference is docs/agent-cli.md, generated from this tree.
//
// It parses flags, wires the parts and runs them until the context ends;
// it does not implement scoring, signal handling (cmd/atelier-agent owns
// the signal context) or the agent itself.
package agentcmd
