package telemetry

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Merge folds src, the batch that follows dst, into dst, as if one interval
// had been measured from dst's start to src's end: request counts,
// histograms, device counts and process CPU add up; feature summaries merge
// (Welford moments and sketches); captured inputs and events are
// concatenated; point-in-time figures (memory, disk, uptime, cache, spool,
// dropped batches) are src's, the newer; host CPU utilization is averaged
// over the two durations. dst's seq and first_seq are the caller's to set.
//
// It fails, leaving dst unchanged, when the two cannot be merged exactly: a
// deployment's histogram with other bounds in src, or a malformed sketch.
func Merge(dst, src *agentv1.TelemetryBatch) error {
	out := proto.Clone(dst).(*agentv1.TelemetryBatch)
	for _, sd := range src.GetDeployments() {
		dd := findDeployment(out, sd)
		if dd == nil {
			out.Deployments = append(out.Deployments, proto.Clone(sd).(*agentv1.DeploymentTelemetry))
			continue
		}
		if err := mergeDeployment(dd, sd); err != nil {
			return fmt.Errorf("merge deployment %q version %d: %w", sd.GetName(), sd.GetModelVersion(), err)
		}
	}
	out.Agent = mergeAgent(out.GetAgent(), src.GetAgent(), out.GetEndUnixNano()-out.GetStartUnixNano(), src.GetEndUnixNano()-src.GetStartUnixNano())
	out.EndUnixNano = src.GetEndUnixNano()
	out.DroppedBatches = max(out.GetDroppedBatches(), src.GetDroppedBatches())
	out.Events = append(out.Events, src.GetEvents()...)
	proto.Reset(dst)
	proto.Merge(dst, out)
	return nil
}

func findDeployment(b *agentv1.TelemetryBatch, d *agentv1.DeploymentTelemetry) *agentv1.DeploymentTelemetry {
	for _, x := range b.GetDeployments() {
		if x.GetName() == d.GetName() && x.GetModelVersion() == d.GetModelVersion() && x.GetModelSha256() == d.GetModelSha256() && x.GetBackend() == d.GetBackend() {
			return x
		}
	}
	return nil
}

func mergeDeployment(dst, src *agentv1.DeploymentTelemetry) error {
	for _, h := range []struct {
		name     string
		dst, src **agentv1.Histogram
	}{{"queue_seconds", &dst.QueueSeconds, &src.QueueSeconds}, {"compute_seconds", &dst.ComputeSeconds, &src.ComputeSeconds},
		{"request_seconds", &dst.RequestSeconds, &src.RequestSeconds}, {"batch_size", &dst.BatchSize, &src.BatchSize}} {
		if err := mergeHistogram(h.dst, *h.src); err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
	}
	feats, err := mergeFeatures(dst.GetFeatures(), src.GetFeatures())
	if err != nil {
		return err
	}
	dst.Features = feats
	if len(src.GetRequests()) > 0 && dst.Requests == nil {
		dst.Requests = map[string]uint64{}
	}
	for k, v := range src.GetRequests() {
		dst.Requests[k] += v
	}
	dst.DeviceFaults += src.GetDeviceFaults()
	dst.CpuFallbacks += src.GetCpuFallbacks()
	dst.Captured = append(dst.Captured, src.GetCaptured()...)
	return nil
}

func mergeHistogram(dst **agentv1.Histogram, src *agentv1.Histogram) error {
	if src == nil {
		return nil
	}
	if *dst == nil {
		*dst = proto.Clone(src).(*agentv1.Histogram)
		return nil
	}
	d := *dst
	if !slices.Equal(d.GetBounds(), src.GetBounds()) || len(d.GetCounts()) != len(src.GetCounts()) {
		return fmt.Errorf("histograms with different bounds (%d and %d buckets)", len(d.GetCounts()), len(src.GetCounts()))
	}
	for i, c := range src.GetCounts() {
		d.Counts[i] += c
	}
	d.Sum += src.GetSum()
	return nil
}

type featureKey struct {
	input string
	index uint32
}

func mergeFeatures(dst, src []*agentv1.FeatureSummary) ([]*agentv1.FeatureSummary, error) {
	if len(src) == 0 {
		return dst, nil
	}
	at := make(map[featureKey]*agentv1.FeatureSummary, len(dst))
	for _, f := range dst {
		at[featureKey{f.GetInput(), f.GetIndex()}] = f
	}
	for _, s := range src {
		d := at[featureKey{s.GetInput(), s.GetIndex()}]
		if d == nil {
			c := proto.Clone(s).(*agentv1.FeatureSummary)
			dst = append(dst, c)
			at[featureKey{s.GetInput(), s.GetIndex()}] = c
			continue
		}
		if err := mergeFeature(d, s); err != nil {
			return nil, fmt.Errorf("feature %s[%d]: %w", s.GetInput(), s.GetIndex(), err)
		}
	}
	return dst, nil
}

// mergeFeature combines two summaries of disjoint samples (Chan et al.'s
// parallel variance) and their sketches.
func mergeFeature(d, s *agentv1.FeatureSummary) error {
	if s.GetSketch() != nil {
		ds, err := sketch.FromProto(d.GetSketch())
		if err != nil {
			return err
		}
		ss, err := sketch.FromProto(s.GetSketch())
		if err != nil {
			return err
		}
		ds.Merge(ss)
		d.Sketch = ds.Proto()
	}
	d.NanCount += s.GetNanCount()
	if s.GetCount() == 0 {
		return nil
	}
	if d.GetCount() == 0 {
		d.Count, d.Mean, d.M2, d.Min, d.Max = s.GetCount(), s.GetMean(), s.GetM2(), s.GetMin(), s.GetMax()
		return nil
	}
	na, nb := float64(d.GetCount()), float64(s.GetCount())
	n := na + nb
	delta := s.GetMean() - d.GetMean()
	d.Mean += delta * nb / n
	d.M2 += s.GetM2() + delta*delta*na*nb/n
	d.Min, d.Max = min(d.GetMin(), s.GetMin()), max(d.GetMax(), s.GetMax())
	d.Count += s.GetCount()
	return nil
}

// mergeAgent: CPU seconds add, utilization is duration-weighted, the rest
// are src's (the newer point in time).
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
