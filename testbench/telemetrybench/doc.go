// Package telemetrybench measures the hub ingesting a fleet's telemetry:
// batches and points per second, the hub's CPU, and whether anything was
// lost or counted twice, in steady state and after an outage.
//
// Run builds ./cmd/atelier and starts `atelier hub serve` as a separate
// process (testbench/internal/hubproc, so /proc accounts its CPU alone).
// A testbench/fleetsim fleet of N real agents (own enrollment, own MQTT
// session and credential, own on-disk spool) runs in the bench process
// with fleetsim.Traffic: each agent scores requests against a simulated
// model through a real scoring registry at --rate requests per second,
// so every batch carries what a real agent's does (request counts by
// outcome, queue/compute/request/batch histograms, 64 input feature
// summaries with sketches, host figures), every --interval.
//
// Steady state: once every agent is online it measures the hub's
// utime+stime and its /metrics counters of ingested batches and points
// over --seconds. Outage (--outage D): it then kills the hub with SIGKILL,
// leaves the fleet spooling for D, restarts the hub on the same data and
// ports, and reports how long the backlog took to drain (until the hub
// counts every request scored before it came back) and the hub's CPU
// meanwhile. Finally it stops the traffic and waits until the hub's
// running total of requests for the deployment equals what the fleet
// scored: lost (fewer) and duplicated (more) must both be 0.
//
// The simulated agents keep their data, and so their fsynced telemetry
// spools, in a temporary directory in /dev/shm (tmpfs) unless
// --agents-dir says otherwise. Real agents each append to their own disk;
// 1,000 simulated agents appending (and fsyncing) a batch a second on one
// shared disk capped the fleet at about 580 batches/s on the 2-core
// machine this was measured on, so the hub was never offered the rate the
// bench is about. The hub's own data stays on disk (--dir).
//
// --hub-cpuprofile FILE starts the hub with --pprof and saves its CPU
// profile over the steady-state window (`go tool pprof FILE`).
//
//	go run ./testbench/cmd/bench telemetry --agents 1000 --seconds 30 --outage 10m
package telemetrybench
