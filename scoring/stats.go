package scoring

import (
	"cmp"
	"math"
	"slices"
)

// maxRetired is how many unloaded versions Stats keeps reporting, so a
// consumer polling at an interval sees the last requests of a version
// swapped out between two polls.
const maxRetired = 32

// HistogramStats is a snapshot of one histogram. Counts has len(Bounds)+1
// entries, the last for values above every bound; counts are per bucket,
// not cumulative.
type HistogramStats struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// Count is the number of observations.
func (h HistogramStats) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Sub returns h minus an earlier snapshot of the same histogram (the
// observations between the two). A zero prev returns h.
func (h HistogramStats) Sub(prev HistogramStats) HistogramStats {
	d := HistogramStats{Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Sum: h.Sum - prev.Sum}
	for i := range min(len(d.Counts), len(prev.Counts)) {
		d.Counts[i] -= prev.Counts[i]
	}
	return d
}

// Quantile estimates the q-quantile (0 < q ≤ 1) by linear interpolation
// inside the bucket that holds it (the first bucket starts at 0; a quantile
// in the overflow bucket is reported as the last bound). NaN when empty.
func (h HistogramStats) Quantile(q float64) float64 {
	n := h.Count()
	if n == 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(n)
	var cum float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			if i >= len(h.Bounds) {
				return h.Bounds[len(h.Bounds)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = h.Bounds[i-1]
			}
			return lo + (h.Bounds[i]-lo)*(rank-cum)/float64(c)
		}
		cum += float64(c)
	}
	return h.Bounds[len(h.Bounds)-1]
}

// VersionStats are the running totals of one loaded (or recently
// unloaded) model version since it was loaded.
type VersionStats struct {
	// ID is unique per load in this registry: a version unloaded and
	// loaded again gets a new ID (and totals from zero).
	ID             uint64
	Model, Version string
	// Retired is set once the version is unloaded; its totals are final.
	Retired bool
	// Requests by outcome: "ok", "invalid", "queue_full", "unavailable",
	// "timeout", "canceled", "error".
	Requests map[string]uint64
	// Queue, Compute and Request are in seconds; Batch counts requests per
	// backend run.
	Queue, Compute, Request, Batch HistogramStats
}

// Errors counts requests that did not end "ok".
func (s VersionStats) Errors() uint64 {
	var n uint64
	for k, c := range s.Requests {
		if k != outcomeNames[outcomeOK] {
			n += c
		}
	}
	return n
}

// Stats returns the totals of every loaded version and of the last
// unloaded ones, ordered by ID. It does not reset anything: consumers keep
// the previous snapshot per ID and subtract.
func (r *Registry) Stats() []VersionStats {
	r.mu.RLock()
	var vs []*Version
	for _, md := range r.models {
		for _, v := range md.versions {
			vs = append(vs, v)
		}
	}
	r.mu.RUnlock()
	r.statsMu.Lock()
	retired := slices.Clone(r.retired)
	r.statsMu.Unlock()
	out := make([]VersionStats, 0, len(vs)+len(retired))
	for _, v := range vs {
		out = append(out, v.stats(false))
	}
	for _, v := range retired {
		out = append(out, v.stats(true))
	}
	slices.SortFunc(out, func(a, b VersionStats) int { return cmp.Compare(a.ID, b.ID) })
	// A version being unloaded can be both loaded and retired for a moment.
	return slices.CompactFunc(out, func(a, b VersionStats) bool {
		return a.ID == b.ID
	})
}

func (r *Registry) retire(v *Version) {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	r.retired = append(r.retired, v)
	if n := len(r.retired); n > maxRetired {
		r.retired = slices.Delete(r.retired, 0, n-maxRetired)
	}
}

func (v *Version) stats(retired bool) VersionStats {
	m := v.metrics
	s := VersionStats{ID: v.id, Model: v.Model, Version: v.Version, Retired: retired,
		Requests: make(map[string]uint64, numOutcomes),
		Queue:    m.queue.snapshot(), Compute: m.compute.snapshot(), Request: m.request.snapshot(), Batch: m.batch.snapshot()}
	for o := range numOutcomes {
		s.Requests[outcomeNames[o]] = m.requests[o].Load()
	}
	return s
}

func (h *histogram) snapshot() HistogramStats {
	s := HistogramStats{Bounds: h.bounds, Counts: make([]uint64, len(h.counts)), Sum: math.Float64frombits(h.sum.Load())}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	return s
}
