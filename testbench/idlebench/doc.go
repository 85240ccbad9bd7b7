// Package idlebench measures what a fleet of connected, idle agents costs
// the hub: its CPU (in cores) and its resident memory.
//
// Run builds ./cmd/atelier into a temporary directory and starts
// `atelier hub serve` as a separate process (so /proc accounts its CPU
// alone), reads the bound addresses from <data>/hub.addr, then runs a
// testbench/fleetsim fleet of N agents in the bench process: each enrolls
// over REST with its own join token and keeps its own MQTT session with
// its own credential, publishing presence and a heartbeat every
// --heartbeat (default 10s, the real agent's default). No deployment is
// made, so the agents stay idle. Once GET /api/v1/agents shows all N
// online and a short settle period has passed, it reads the hub's
// utime+stime from /proc/PID/stat, waits --seconds, reads it again and
// reports hub_cpu_cores = Δcpu / Δwall next to the aim (below 0.05 cores,
// issue 4), the hub's VmRSS, and how many agents were still online at the
// end. Clock ticks are converted with `getconf CLK_TCK` (100 assumed if
// getconf is missing). Finally it closes the fleet and stops the hub with
// SIGTERM, waiting for it to exit.
//
// It needs Linux (/proc) and the go tool, and must be run from inside the
// module's tree. It does not measure agents on separate machines: the
// fleet shares this machine's cores and loopback with the hub, though not
// its process.
//
//	go run ./testbench/cmd/bench idle --agents 1000 --seconds 30
package idlebench
