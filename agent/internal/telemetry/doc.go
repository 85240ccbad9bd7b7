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
// concurrent runs rarely contend, and per summarized element does a Welford
// update and counts the element's sketch key (a logarithm) in a dense
// bucket window (4 bytes a bucket, at most 4,096 buckets a feature and
// shard; keys beyond it go to a map-based sketch). BenchmarkObserve
// measured 26 CPU ns per element (4 features) to 35-38 (256 features, 8
// rows) on a loaded 2-core machine; BenchmarkWrapped compares a wrapped and
// a bare ONNX Runtime runner.
//
// # Bandwidth budget
//
// A batch holds, per deployment version that answered requests in the
// interval, about 150 bytes of counters and histograms; per summarized
// feature about 330 bytes (moments and a sketch of about 90 buckets for
// 1,000 samples of N(10, 3); a sketch has at most 2,048 buckets); and at
// most Config.CaptureBytes (default 256 KiB) of captured bodies. So a
// deployment with 4 features costs about 1.5 KiB a batch, one with 256
// about 85 KiB. The agent trims a batch over its upload limit (captures,
// then sketches, then summaries; see docs/protocol.md).
//
// # What it does not do
//
// It does not spool, send or sequence batches (the agent does, through
// agent/internal/spool and agent/internal/mqttsession), evaluate guard
// rules, or compute drift (the hub does).
package telemetry
