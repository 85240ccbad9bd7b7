package telemetry

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Merger folds consecutive batches into one, as if one interval had been
// measured from the first's start to the last's end: request counts,
// histograms, device counts and process CPU add up; feature summaries merge
// (Welford moments, and sketches kept decoded until Batch); captured
// inputs and events are concatenated; point-in-time figures (memory, disk,
// uptime, cache, spool, dropped batches) are the newest; host CPU
// utilization is averaged over the durations. Seq and FirstSeq are the
// caller's to set. A Merger is not safe for concurrent use.
type Merger struct {
	b       *agentv1.TelemetryBatch // the envelope; Deployments rebuilt by Batch
	deps    []*depAcc
	agent   *agentv1.AgentTelemetry
	agentNs int64 // duration the agent figures' utilization covers
}

type depKey struct {
	name    string
	version uint32
	sha     string
	backend string
}

type depAcc struct {
	key   depKey
	d     *agentv1.DeploymentTelemetry // owned; Features rebuilt by Batch
	feats map[featureKey]*featAcc
	order []featureKey
}

type featureKey struct {
	input string
	index uint32
}

type featAcc struct {
	f  *agentv1.FeatureSummary // moments; Sketch rebuilt by Batch
	sk *sketch.Sketch          // nil when no batch carried one
}

// NewMerger starts a merge with first, which the Merger then owns (and
// changes). It fails on a malformed sketch in first.
func NewMerger(first *agentv1.TelemetryBatch) (*Merger, error) {
	m := &Merger{b: first, agent: first.GetAgent(), agentNs: first.GetEndUnixNano() - first.GetStartUnixNano()}
	deps := first.GetDeployments()
	first.Deployments = nil
	for _, d := range deps {
		k := keyOf(d)
		if m.find(k) != nil {
			return nil, fmt.Errorf("deployment %q version %d appears twice", d.GetName(), d.GetModelVersion())
		}
		a := &depAcc{key: k, d: d, feats: map[featureKey]*featAcc{}}
		feats := d.GetFeatures()
		d.Features = nil
		for _, f := range feats {
			fk := featureKey{f.GetInput(), f.GetIndex()}
			if a.feats[fk] != nil {
				return nil, fmt.Errorf("deployment %q: feature %s[%d] appears twice", d.GetName(), f.GetInput(), f.GetIndex())
			}
			fa := &featAcc{f: f}
			if f.GetSketch() != nil {
				sk, err := sketch.FromProto(f.GetSketch())
				if err != nil {
					return nil, fmt.Errorf("deployment %q: feature %s[%d]: %w", d.GetName(), f.GetInput(), f.GetIndex(), err)
				}
				fa.sk = sk
			}
			f.Sketch = nil
			a.feats[fk] = fa
			a.order = append(a.order, fk)
		}
		m.deps = append(m.deps, a)
	}
	return m, nil
}

func keyOf(d *agentv1.DeploymentTelemetry) depKey {
	return depKey{d.GetName(), d.GetModelVersion(), d.GetModelSha256(), d.GetBackend()}
}

func (m *Merger) find(k depKey) *depAcc {
	for _, a := range m.deps {
		if a.key == k {
			return a
		}
	}
	return nil
}

// Add folds src, the batch after the last one added, in. src is only read.
// It fails, changing nothing, when src cannot be merged exactly: a
// histogram with other bounds, or a malformed sketch.
func (m *Merger) Add(src *agentv1.TelemetryBatch) error {
	// Check first, so a failure changes nothing.
	for _, sd := range src.GetDeployments() {
		a := m.find(keyOf(sd))
		if a != nil {
			for _, h := range []struct {
				name string
				d, s *agentv1.Histogram
			}{{"queue_seconds", a.d.GetQueueSeconds(), sd.GetQueueSeconds()}, {"compute_seconds", a.d.GetComputeSeconds(), sd.GetComputeSeconds()},
				{"request_seconds", a.d.GetRequestSeconds(), sd.GetRequestSeconds()}, {"batch_size", a.d.GetBatchSize(), sd.GetBatchSize()}} {
				if h.d != nil && h.s != nil && (!slices.Equal(h.d.GetBounds(), h.s.GetBounds()) || len(h.d.GetCounts()) != len(h.s.GetCounts())) {
					return fmt.Errorf("merge deployment %q version %d: %s: histograms with different bounds %v and %v",
						sd.GetName(), sd.GetModelVersion(), h.name, h.d.GetBounds(), h.s.GetBounds())
				}
			}
		}
		for _, f := range sd.GetFeatures() {
			if err := sketch.ValidateProto(f.GetSketch()); err != nil {
				return fmt.Errorf("merge deployment %q: feature %s[%d]: %w", sd.GetName(), f.GetInput(), f.GetIndex(), err)
			}
		}
	}
	for _, sd := range src.GetDeployments() {
		a := m.find(keyOf(sd))
		if a == nil {
			a = &depAcc{key: keyOf(sd), d: &agentv1.DeploymentTelemetry{Name: sd.GetName(), ModelVersion: sd.GetModelVersion(),
				ModelSha256: sd.GetModelSha256(), Backend: sd.GetBackend()}, feats: map[featureKey]*featAcc{}}
			m.deps = append(m.deps, a)
		}
		a.add(sd)
	}
	sDur := src.GetEndUnixNano() - src.GetStartUnixNano()
	m.agent = mergeAgent(m.agent, src.GetAgent(), m.agentNs, sDur)
	if src.GetAgent() != nil {
		m.agentNs += sDur
	}
	m.b.EndUnixNano = src.GetEndUnixNano()
	m.b.DroppedBatches = max(m.b.GetDroppedBatches(), src.GetDroppedBatches())
	m.b.Events = append(m.b.Events, src.GetEvents()...)
	return nil
}

func (a *depAcc) add(s *agentv1.DeploymentTelemetry) {
	d := a.d
	if len(s.GetRequests()) > 0 && d.Requests == nil {
		d.Requests = map[string]uint64{}
	}
	for k, v := range s.GetRequests() {
		d.Requests[k] += v
	}
	d.QueueSeconds = addHistogram(d.QueueSeconds, s.GetQueueSeconds())
	d.ComputeSeconds = addHistogram(d.ComputeSeconds, s.GetComputeSeconds())
	d.RequestSeconds = addHistogram(d.RequestSeconds, s.GetRequestSeconds())
	d.BatchSize = addHistogram(d.BatchSize, s.GetBatchSize())
	d.DeviceFaults += s.GetDeviceFaults()
	d.CpuFallbacks += s.GetCpuFallbacks()
	d.Captured = append(d.Captured, s.GetCaptured()...)
	for _, f := range s.GetFeatures() {
		fk := featureKey{f.GetInput(), f.GetIndex()}
		fa := a.feats[fk]
		if fa == nil {
			fa = &featAcc{f: &agentv1.FeatureSummary{Input: f.GetInput(), Index: f.GetIndex()}}
			a.feats[fk] = fa
			a.order = append(a.order, fk)
		}
		fa.add(f)
	}
}

// addHistogram adds s into d (same bounds, checked by Add).
func addHistogram(d, s *agentv1.Histogram) *agentv1.Histogram {
	if s == nil {
		return d
	}
	if d == nil {
		return proto.Clone(s).(*agentv1.Histogram)
	}
	for i, c := range s.GetCounts() {
		d.Counts[i] += c
	}
	d.Sum += s.GetSum()
	return d
}

// add combines two summaries of disjoint samples (Chan et al.'s parallel
// variance) and their sketches.
func (fa *featAcc) add(s *agentv1.FeatureSummary) {
	if s.GetSketch() != nil {
		if fa.sk == nil {
			fa.sk = sketch.New()
		}
		// Validated by Add; a count overflow (2^64 values) is ignored.
		_ = fa.sk.MergeProto(s.GetSketch())
	}
	d := fa.f
	d.NanCount += s.GetNanCount()
	if s.GetCount() == 0 {
		return
	}
	if d.GetCount() == 0 {
		d.Count, d.Mean, d.M2, d.Min, d.Max = s.GetCount(), s.GetMean(), s.GetM2(), s.GetMin(), s.GetMax()
		return
	}
	na, nb := float64(d.GetCount()), float64(s.GetCount())
	n := na + nb
	delta := s.GetMean() - d.GetMean()
	d.Mean += delta * nb / n
	d.M2 += s.GetM2() + delta*delta*na*nb/n
	d.Min, d.Max = min(d.GetMin(), s.GetMin()), max(d.GetMax(), s.GetMax())
	d.Count += s.GetCount()
}

// mergeAgent: CPU seconds add, utilization is duration-weighted, the rest
// are s's (the newer point in time).
func mergeAgent(d, s *agentv1.AgentTelemetry, dDur, sDur int64) *agentv1.AgentTelemetry {
	if s == nil {
		return d
	}
	if d == nil {
		return proto.Clone(s).(*agentv1.AgentTelemetry)
	}
	out := proto.Clone(s).(*agentv1.AgentTelemetry)
	out.ProcessCpuSeconds = d.GetProcessCpuSeconds() + s.GetProcessCpuSeconds()
	if total := dDur + sDur; total > 0 {
		out.HostCpuUtilization = (d.GetHostCpuUtilization()*float64(dDur) + s.GetHostCpuUtilization()*float64(sDur)) / float64(total)
	}
	return out
}

// Batch returns the merged batch. The Merger must not be used afterwards.
func (m *Merger) Batch() *agentv1.TelemetryBatch {
	b := m.b
	b.Agent = m.agent
	b.Deployments = make([]*agentv1.DeploymentTelemetry, 0, len(m.deps))
	for _, a := range m.deps {
		a.d.Features = make([]*agentv1.FeatureSummary, 0, len(a.order))
		for _, fk := range a.order {
			fa := a.feats[fk]
			if fa.sk != nil {
				fa.f.Sketch = fa.sk.Proto()
			}
			a.d.Features = append(a.d.Features, fa.f)
		}
		b.Deployments = append(b.Deployments, a.d)
	}
	return b
}

// Merge folds src, the batch that follows dst, into dst (see Merger). It
// fails, leaving dst unchanged, when the two cannot be merged exactly.
func Merge(dst, src *agentv1.TelemetryBatch) error {
	m, err := NewMerger(proto.Clone(dst).(*agentv1.TelemetryBatch))
	if err != nil {
		return err
	}
	if err := m.Add(src); err != nil {
		return err
	}
	out := m.Batch()
	proto.Reset(dst)
	proto.Merge(dst, out)
	return nil
}
