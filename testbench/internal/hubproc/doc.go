// Package hubproc runs the hub and other programs as separate processes
// for benchmarks and measures processes through /proc: Build and
// BuildPackages compile ./cmd/atelier and other main packages, Start runs
// `atelier hub serve` and waits for its hub.addr, Exec starts any other
// binary (the agent, helpers), Proc stops or kills either; CPUTicks,
// RSSMiB, Memory and Mapped read a process's CPU time, resident memory and
// mapped files; CPUProfile fetches a CPU profile from a hub started with
// --pprof. A separate process lets /proc account one program's CPU
// and memory alone, apart from the bench driving it.
//
// It needs Linux (/proc) and the go tool, and must be used from inside the
// module's tree. It is for testbench commands, not for production code.
package hubproc
