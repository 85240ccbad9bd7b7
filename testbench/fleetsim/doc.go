// Package fleetsim runs a simulated fleet of agents in one process. Each
// simulated agent is a real agent.Agent: it enrolls through the hub's REST
// API with its own one-time join token, connects to the broker over its
// own MQTT connection with its own credential, receives its desired state,
// downloads and verifies models chunk by chunk into its own data directory
// and reports, exactly as atelier-agent does.
//
// What it does not do is score: its agent.Server only checks that the
// verified file is there and records which version each deployment has
// loaded, so thousands of agents fit on one machine without ONNX Runtime.
// Benchmarks (testbench/rolloutbench) and fault-injection scenarios build
// on it.
package fleetsim
