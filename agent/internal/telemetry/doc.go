// Package telemetry measures what an agent reports to the hub in each
// TelemetryBatch (proto/agent/v1): per deployment, per agent, and the
// production inputs of every deployment for drift.
//
// A Collector is created once per agent. Collect, called once per
// telemetry interval by a single goroutine, returns the interval's
// measurements:
//
//   - per deployment and model version that answered (DeploymentTelemetry):
//     requests by outcome and the queue, compute, request and batch-size
//     histograms, as deltas of Config.Stats (scoring.Registry.Stats) between
//     two calls, keyed by VersionStats.ID; a version loaded as "N-reload"
//     (the edge server's temporary name for reloading version N) counts as
//     N. The digest is the one of the spec the runner was wrapped for (see
//     Wrap), else Config.Digest. Backend, device faults and CPU fallbacks
//     come from Config.Devices (deltas of its totals);
//   - per agent (AgentTelemetry): process CPU seconds in the interval and
//     RSS, host CPU utilization (/proc/stat) and memory (/proc/meminfo), the
//     file system of Config.DataDir (statfs), uptime, and the bytes under
//     Config.CacheDir;
//   - input feature summaries: Wrap wraps a scoring.Runner so every Run
//     observes its float and integer input tensors (batch dimension first;
//     the first MonitorOptions.max_features elements of each sample, default
//     256): count, mean and m2 (Welford, merged across shards), min, max,
//     NaN count (±Inf is counted there too) and a relative-error sketch;
//   - payload capture: with MonitorOptions.capture_fraction > 0 each sample
//     is captured with that probability as a KServe v2 JSON request body
//     (its inputs with batch dimension 1), within Config.CaptureBytes per
//     batch over all deployments; samples beyond the budget are not
//     captured (and counted in CaptureSkipped).
//
// # Cost
//
// The hot path (the wrapped Run) takes one of GOMAXPROCS shard mutexes, so
// concurrent runs rarely contend, and does a few float operations per
// summarized element plus one sketch insertion; BenchmarkWrapped measures it
// beside a bare runner.
//
// # Bandwidth budget
//
// A batch holds, per deployment version that answered requests in the
// interval, about 150 bytes of counters and histograms, plus per summarized
// feature about 60 bytes of moments and a sketch bounded by the sketch's
// bucket limit, plus at most Config.CaptureBytes (default 256 KiB) of
// captured bodies. With the defaults (256 features of one input) a
// deployment's batch is typically under 100 KiB; the agent's sender caps an
// upload at its own byte limit (see agent.Config.TelemetryUploadBytes).
//
// # What it does not do
//
// It does not spool, send or sequence batches (the agent does, through
// agent/internal/spool and agent/internal/mqttsession), evaluate guard
// rules, or compute drift (the hub does).
package telemetry
