// Package e2e holds Atelier's end-to-end tests with the real binaries: it
// builds `atelier` and `atelier-agent`, runs a hub and an edge agent as
// processes on loopback, and drives them only through the CLI, the hub's
// data directory and the agent's scoring endpoint, as a user would.
//
// It owns no library code. It does not test internals (each package has its
// own tests) and it does not measure performance (testbench/rolloutbench
// does).
package e2e
