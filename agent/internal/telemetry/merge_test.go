package telemetry

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// summary is the FeatureSummary of xs, computed directly.
func summary(xs []float64) *agentv1.FeatureSummary {
	f := &agentv1.FeatureSummary{Input: "x", Index: 1, Count: uint64(len(xs)), Min: math.Inf(1), Max: math.Inf(-1)}
	sk := sketch.New()
	for _, x := range xs {
		f.Mean += x
		f.Min, f.Max = math.Min(f.Min, x), math.Max(f.Max, x)
		sk.Add(x)
	}
	f.Mean /= float64(len(xs))
	for _, x := range xs {
		f.M2 += (x - f.Mean) * (x - f.Mean)
	}
	f.Sketch = sk.Proto()
	return f
}

func mhist(counts ...uint64) *agentv1.Histogram {
	return &agentv1.Histogram{Bounds: []float64{0.001, 0.01}, Counts: counts, Sum: float64(len(counts))}
}

func batch(start, end int64, ok uint64, xs []float64, rss uint64, cpu, util float64) *agentv1.TelemetryBatch {
	return &agentv1.TelemetryBatch{StartUnixNano: start, EndUnixNano: end, DroppedBatches: 2,
		Deployments: []*agentv1.DeploymentTelemetry{{Name: "dep", ModelVersion: 3, ModelSha256: "ab", Backend: "cpu",
			Requests: map[string]uint64{"ok": ok, "error": 1}, RequestSeconds: mhist(ok, 1, 0), BatchSize: mhist(ok+1, 0, 0),
			Features: []*agentv1.FeatureSummary{summary(xs)}, DeviceFaults: 1, Captured: [][]byte{[]byte(`{"x":1}`)}}},
		Agent:  &agentv1.AgentTelemetry{ProcessRssBytes: rss, ProcessCpuSeconds: cpu, HostCpuUtilization: util},
		Events: []*agentv1.AgentEvent{{Kind: "rollback"}}}
}

func TestMergeEqualsOneLongInterval(t *testing.T) {
	a := []float64{1, 2, 3, 10}
	b := []float64{-4, 5, 6}
	dst := batch(1e9, 2e9, 4, a, 100, 0.5, 0.2)
	src := batch(2e9, 5e9, 3, b, 200, 1.5, 0.6)
	src.DroppedBatches = 5
	src.Deployments = append(src.Deployments, &agentv1.DeploymentTelemetry{Name: "other", ModelVersion: 1, Requests: map[string]uint64{"ok": 9}})
	srcCopy := proto.Clone(src)
	if err := Merge(dst, src); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(src, srcCopy) {
		t.Fatal("Merge changed src")
	}
	if dst.StartUnixNano != 1e9 || dst.EndUnixNano != 5e9 || dst.DroppedBatches != 5 || len(dst.Events) != 2 {
		t.Fatalf("interval %d-%d, dropped %d, %d events; want 1e9-5e9, 5, 2", dst.StartUnixNano, dst.EndUnixNano, dst.DroppedBatches, len(dst.Events))
	}
	if len(dst.Deployments) != 2 || dst.Deployments[1].Name != "other" || dst.Deployments[1].Requests["ok"] != 9 {
		t.Fatalf("deployments %v, want dep merged and other appended", dst.Deployments)
	}
	d := dst.Deployments[0]
	if d.Requests["ok"] != 7 || d.Requests["error"] != 2 || d.DeviceFaults != 2 || len(d.Captured) != 2 {
		t.Fatalf("requests %v, faults %d, captured %d; want ok 7 error 2, 2, 2", d.Requests, d.DeviceFaults, len(d.Captured))
	}
	if got := d.RequestSeconds.Counts; got[0] != 7 || got[1] != 2 || got[2] != 0 || d.RequestSeconds.Sum != 6 {
		t.Fatalf("request histogram %v sum %v, want [7 2 0] sum 6", got, d.RequestSeconds.Sum)
	}
	want := summary(append(append([]float64{}, a...), b...))
	f := d.Features[0]
	if f.Count != want.Count || math.Abs(f.Mean-want.Mean) > 1e-12 || math.Abs(f.M2-want.M2) > 1e-9 || f.Min != -4 || f.Max != 10 {
		t.Fatalf("merged feature count %d mean %v m2 %v min %v max %v; want %d %v %v -4 10", f.Count, f.Mean, f.M2, f.Min, f.Max, want.Count, want.Mean, want.M2)
	}
	if !proto.Equal(f.Sketch, want.Sketch) {
		t.Fatalf("merged sketch %v, want the sketch of all samples %v", f.Sketch, want.Sketch)
	}
	ag := dst.Agent
	if ag.ProcessRssBytes != 200 || ag.ProcessCpuSeconds != 2 || math.Abs(ag.HostCpuUtilization-0.5) > 1e-12 {
		t.Fatalf("agent rss %d cpu %v util %v; want 200 (newest), 2 (sum), 0.5 (1 s at 0.2 and 3 s at 0.6)", ag.ProcessRssBytes, ag.ProcessCpuSeconds, ag.HostCpuUtilization)
	}
}

func TestMergeRefusesOtherBoundsAndKeepsDst(t *testing.T) {
	dst := batch(1e9, 2e9, 4, []float64{1}, 100, 0.5, 0.2)
	src := batch(2e9, 3e9, 3, []float64{2}, 200, 1.5, 0.6)
	src.Deployments[0].RequestSeconds.Bounds = []float64{0.5, 1}
	before := proto.Clone(dst)
	err := Merge(dst, src)
	if err == nil || !strings.Contains(err.Error(), `deployment "dep" version 3: request_seconds: histograms with different bounds`) {
		t.Fatalf("error %v, want the request_seconds bounds named", err)
	}
	if !proto.Equal(dst, before) {
		t.Fatal("a failed Merge changed dst")
	}
}

// BenchmarkMergerAdd: folding one batch of 64 features with sketches into
// a running merge (what an agent catching up pays per spooled batch, on
// top of decoding it).
func BenchmarkMergerAdd(b *testing.B) {
	mk := func(seed float64) *agentv1.TelemetryBatch {
		xs := make([]float64, 50)
		for i := range xs {
			xs[i] = seed + float64(i)*0.37
		}
		bt := batch(1e9, 2e9, 5, xs, 100, 0.1, 0.2)
		f := bt.Deployments[0].Features[0]
		bt.Deployments[0].Features = nil
		for i := range 64 {
			c := proto.Clone(f).(*agentv1.FeatureSummary)
			c.Index = uint32(i)
			bt.Deployments[0].Features = append(bt.Deployments[0].Features, c)
		}
		bt.Deployments[0].Captured = nil
		return bt
	}
	m, err := NewMerger(mk(0))
	if err != nil {
		b.Fatal(err)
	}
	src := mk(3)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Add(src); err != nil {
			b.Fatal(err)
		}
	}
}
