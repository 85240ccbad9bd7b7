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
// This package is arithmetic only: it reads no store and keeps no state.
package drift
