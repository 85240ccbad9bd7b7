package drift

import (
	"fmt"
	"math"

	"github.com/atelier-ml/atelier/internal/sketch"
)

// Defaults of Config.
const (
	DefaultThreshold = 0.2
	DefaultMinCount  = 500
	// Epsilon is the least mass a bin is given in PSI.
	Epsilon = 1e-4
)

// Config says when a feature drifts. Zero fields take the defaults.
type Config struct {
	// Threshold is the PSI at or above which a feature drifts.
	Threshold float64
	// MinCount is the fewest values each side needs before a feature is
	// judged.
	MinCount uint64
}

// WithDefaults fills zero fields and checks the rest; the error names the
// field.
func (c Config) WithDefaults() (Config, error) {
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.MinCount == 0 {
		c.MinCount = DefaultMinCount
	}
	if !(c.Threshold > 0) || math.IsInf(c.Threshold, 0) {
		return c, fmt.Errorf("drift threshold %v: expected a positive PSI", c.Threshold)
	}
	return c, nil
}

// Result compares one feature.
type Result struct {
	PSI float64 `json:"psi"`
	KS  float64 `json:"ks"`
	// Judged is false while either side has fewer than MinCount values
	// (PSI and KS are still computed when both sides have any).
	Judged   bool `json:"judged"`
	Drifting bool `json:"drifting"`
}

// Compare measures current against baseline with c (defaults applied to
// zero fields). Either sketch may be empty (or nil): PSI and KS are then
// NaN and the feature is not judged.
func (c Config) Compare(baseline, current *sketch.Sketch) Result {
	c, _ = c.WithDefaults()
	if baseline == nil || current == nil || baseline.Count() == 0 || current.Count() == 0 {
		return Result{PSI: math.NaN(), KS: math.NaN()}
	}
	r := Result{PSI: PSI(baseline, current), KS: KS(baseline, current)}
	r.Judged = baseline.Count() >= c.MinCount && current.Count() >= c.MinCount
	r.Drifting = r.Judged && r.PSI >= c.Threshold
	return r
}

// Edges returns the baseline's decile edges, ascending and distinct (by
// sketch bucket).
func Edges(baseline *sketch.Sketch) []float64 {
	var edges []float64
	last := int32(0)
	for i := 1; i <= 9; i++ {
		e := baseline.Quantile(float64(i) / 10)
		k := sketch.Key(e)
		if len(edges) > 0 && k == last {
			continue
		}
		edges = append(edges, e)
		last = k
	}
	return edges
}

// Masses returns the fraction of s in each bin cut by edges: len(edges)+1
// values summing to 1.
func Masses(s *sketch.Sketch, edges []float64) []float64 {
	m := make([]float64, len(edges)+1)
	prev := 0.0
	for i, e := range edges {
		c := s.CDF(e)
		m[i] = c - prev
		prev = c
	}
	m[len(edges)] = 1 - prev
	return m
}

// PSI is the population stability index of current against baseline's
// deciles (see the package comment). Both must be non-empty.
func PSI(baseline, current *sketch.Sketch) float64 {
	edges := Edges(baseline)
	return psiOf(Masses(baseline, edges), Masses(current, edges))
}

func psiOf(p, q []float64) float64 {
	var sum float64
	for i := range p {
		a, b := max(p[i], Epsilon), max(q[i], Epsilon)
		sum += (b - a) * math.Log(b/a)
	}
	return sum
}

// KS is the largest CDF difference between the two sketches over the
// buckets of both. Both must be non-empty.
func KS(baseline, current *sketch.Sketch) float64 {
	a, b := baseline.Proto(), current.Proto()
	na, nb := float64(baseline.Count()), float64(current.Count())
	var i, j int
	var ca, cb uint64
	var d float64
	// Walk the union of keys ascending; after each key both cumulative
	// counts are the CDFs at that bucket.
	for i < len(a.Keys) || j < len(b.Keys) {
		switch {
		case j == len(b.Keys) || (i < len(a.Keys) && a.Keys[i] < b.Keys[j]):
			ca += a.Counts[i]
			i++
		case i == len(a.Keys) || b.Keys[j] < a.Keys[i]:
			cb += b.Counts[j]
			j++
		default:
			ca += a.Counts[i]
			cb += b.Counts[j]
			i++
			j++
		}
		d = max(d, math.Abs(float64(ca)/na-float64(cb)/nb))
	}
	return d
}
