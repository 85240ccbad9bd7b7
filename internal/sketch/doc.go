// Package sketch is a mergeable quantile sketch with a bounded relative
// error, in the manner of DDSketch: values are counted in logarithmic
// buckets, so a quantile is reported within RelativeAccuracy (1%) of the
// exact value of the same rank, whatever the distribution's range.
//
// Layout. A value v with |v| >= MinValue (1e-9) falls in the bucket of
// index i = ceil(log_γ |v|), γ = (1+α)/(1-α), α = RelativeAccuracy; the
// bucket covers (γ^(i-1), γ^i] and reports 2γ^i/(γ+1), which is within α
// of every value in it. Values with |v| < MinValue share one zero bucket
// and are reported as 0. Positive and negative values use mirrored
// buckets. On the wire (agentv1.Sketch) one signed key names a bucket:
// 0 is the zero bucket, k > 0 the positive bucket of index k+minIndex-1,
// k < 0 the negative bucket of index -k+minIndex-1, so ascending keys are
// ascending values. ±Inf is counted in the outermost bucket of its sign;
// NaN is ignored (callers count NaN themselves).
//
// Bound on size. A sketch holds at most MaxBuckets (2048) non-empty
// buckets. When one more is needed, the lowest buckets (smallest values,
// the most negative first) are collapsed into the lowest bucket kept,
// leaving 1792 (7/8) so that collapsing is rare even under a stream of
// new keys. The
// accuracy guarantee then holds for every quantile whose rank is above the
// collapsed mass; quantiles inside it are reported as the lowest kept
// bucket's value (too high). With α = 1%, 2048 buckets span a ratio of
// about 6e17 between the smallest and largest magnitude of one sign, so
// collapsing does not happen for real features.
//
// CDF is exact at bucket granularity: CDF(v) counts every bucket whose key
// is at or below v's key, so it lies between the true F(v/γ) and F(v·γ)
// for positive v. Two sketches compared at the same edges see the same
// bucket boundaries, which is what drift measures need.
//
// A Sketch is not safe for concurrent use; callers serialize. This package
// does not persist sketches or judge drift (hub/internal/drift does).
package sketch
