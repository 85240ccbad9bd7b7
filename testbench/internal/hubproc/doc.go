// Package hubproc runs the hub as a separate process for benchmarks and
// measures processes through /proc: Build compiles ./cmd/atelier, Start
// runs `atelier hub serve` and waits for its hub.addr, Proc stops or kills
// it; CPUTicks and RSSMiB read a process's CPU time and resident memory.
// A separate process lets /proc account the hub's CPU alone, apart from
// the simulated fleet driving it.
//
// It needs Linux (/proc) and the go tool, and must be used from inside the
// module's tree. It is for testbench commands, not for production code.
package hubproc
