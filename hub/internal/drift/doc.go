// Package drift measures how far a deployment's inputs moved from a
// baseline, feature by feature, from two quantile sketches
// (internal/sketch): the baseline's and the current window's.
//
// Population stability index. The bins are the baseline's deciles: edges
// at the baseline's 10%, 20%, ..., 90% quantiles (equal edges, which a
// feature with few distinct values gives, are merged), so each bin holds
// about a tenth of the baseline. Each side's mass per bin is read from its
// sketch's CDF at the edges; a mass below Epsilon (1e-4) is taken as
// Epsilon so an empty bin gives a large but finite term. Then
//
//	PSI = Σ (current_i - baseline_i) · ln(current_i / baseline_i)
//
// Common reading: below 0.1 stable, 0.1–0.2 a moderate shift, above 0.2
// (DefaultThreshold) a significant one.
//
// KS distance. The largest |F_baseline(x) - F_current(x)| over the bucket
// edges of both sketches: a two-sample Kolmogorov–Smirnov statistic at
// the sketches' resolution (1% relative), reported beside PSI.
//
// Judging. A feature is judged only when both sides counted at least
// MinCount values (default 500); it drifts when its PSI is at or above
// Threshold. A deployment drifts when any judged feature drifts.
//
// Evaluator. Report compares a deployment's model version over a window
// with its baseline, making the baseline first when it can: from the
// training run's hub.BaselineArtifact (baseline.csv, parsed by
// ParseBaselineCSV) when the version was registered from a run that saved
// one, otherwise from the first BaselineWindow (1h) of telemetry after the
// version first reported features, once that hour is over (extended until
// a feature counted MinCount values when the hour had less). Until then the
// report's status is pending_baseline. Run evaluates every deployment
// every Interval (1m) over the last Window (1h), records the drifting flag
// when a deployment was judged, and records drift_detected and
// drift_resolved events when the flag changes (an event store error is
// logged, the flag is still recorded). It also prunes per-minute feature
// summaries older than Retention (7 days); baselines are kept.
//
// This package does not ingest telemetry (hub/internal/sqlite does) or
// serve it (hub/internal/api).
package drift
