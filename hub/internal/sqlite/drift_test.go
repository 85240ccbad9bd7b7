package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// tfeature summarizes vals as an agent would.
func tfeature(input string, idx uint32, vals ...float64) *agentv1.FeatureSummary {
	f := &agentv1.FeatureSummary{Input: input, Index: idx, Min: math.Inf(1), Max: math.Inf(-1)}
	sk := sketch.New()
	for _, v := range vals {
		if math.IsNaN(v) {
			f.NanCount++
			continue
		}
		f.Count++
		d := v - f.Mean
		f.Mean += d / float64(f.Count)
		f.M2 += d * (v - f.Mean)
		f.Min, f.Max = math.Min(f.Min, v), math.Max(f.Max, v)
		sk.Add(v)
	}
	if f.Count == 0 {
		f.Min, f.Max = 0, 0
	}
	f.Sketch = sk.Proto()
	return f
}

func TestDriftFeaturesMerged(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	// Three batches: two in minute 0 (from two agents), one in minute 1;
	// values 1..30 overall for x[0], plus a NaN; x[1] only in minute 1.
	var all []float64
	mk := func(lo, hi int) []float64 {
		var v []float64
		for i := lo; i <= hi; i++ {
			v = append(v, float64(i))
		}
		all = append(all, v...)
		return v
	}
	d1 := tdep("d", 1, 10, 0, 0)
	d1.Features = []*agentv1.FeatureSummary{tfeature("x", 0, append(mk(1, 10), math.NaN())...)}
	d2 := tdep("d", 1, 10, 0, 0)
	d2.Features = []*agentv1.FeatureSummary{tfeature("x", 0, mk(11, 20)...)}
	d3 := tdep("d", 1, 10, 0, 0)
	d3.Features = []*agentv1.FeatureSummary{tfeature("x", 0, mk(21, 30)...), tfeature("x", 1, 5, 5)}
	res := ingest(t, st,
		hub.TelemetryUpload{Agent: "a1", Batches: []*agentv1.TelemetryBatch{tbatch(1, telemetryT0, d1)}},
		hub.TelemetryUpload{Agent: "a2", Batches: []*agentv1.TelemetryBatch{tbatch(1, telemetryT0.Add(20*time.Second), d2)}},
		hub.TelemetryUpload{Agent: "a1", Batches: []*agentv1.TelemetryBatch{tbatch(2, telemetryT0.Add(time.Minute), d3)}})
	if res.Stored != 3 {
		t.Fatalf("stored %d batches, want 3", res.Stored)
	}
	// A resent batch is a duplicate and changes nothing.
	if res := ingest(t, st, hub.TelemetryUpload{Agent: "a1", Batches: []*agentv1.TelemetryBatch{tbatch(1, telemetryT0, d1)}}); res.Duplicates != 1 {
		t.Fatalf("resend: %+v, want 1 duplicate", res)
	}
	fs, err := st.FeatureWindow(ctx, "d", 1, telemetryT0, telemetryT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].Input != "x" || fs[0].Index != 0 || fs[1].Index != 1 {
		t.Fatalf("features %+v, want x[0] and x[1]", fs)
	}
	f := fs[0]
	// Exact: 1..30 has mean 15.5, population variance (30²-1)/12.
	if f.Count != 30 || f.NaNCount != 1 || f.Min != 1 || f.Max != 30 || math.Abs(f.Mean-15.5) > 1e-12 ||
		math.Abs(f.Std-math.Sqrt(899.0/12)) > 1e-9 {
		t.Errorf("merged x[0] = %+v, want count 30, nan 1, min 1, max 30, mean 15.5, std %.6f", f, math.Sqrt(899.0/12))
	}
	sk, err := sketch.FromProto(f.Sketch)
	if err != nil || sk.Count() != 30 {
		t.Fatalf("merged sketch: count %d, err %v", sk.Count(), err)
	}
	// Only minute 0.
	fs, err = st.FeatureWindow(ctx, "d", 1, telemetryT0, telemetryT0.Add(time.Minute))
	if err != nil || len(fs) != 1 || fs[0].Count != 20 {
		t.Fatalf("minute 0: %+v, %v; want x[0] with 20 values", fs, err)
	}
	first, err := st.FirstFeatureTime(ctx, "d", 1)
	if err != nil || !first.Equal(telemetryT0) {
		t.Errorf("FirstFeatureTime = %v, %v; want %v", first, err, telemetryT0)
	}
	if first, _ := st.FirstFeatureTime(ctx, "d", 2); !first.IsZero() {
		t.Errorf("FirstFeatureTime of an unseen version = %v, want zero", first)
	}
	if n, err := st.PruneDrift(ctx, telemetryT0.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("PruneDrift = %d, %v; want 1 row (minute 0, x[0])", n, err)
	}
}

func TestDriftBadFeaturesSkipped(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	good := tfeature("x", 0, 1, 2, 3)
	d := tdep("d", 1, 10, 0, 0)
	d.Features = []*agentv1.FeatureSummary{
		good,
		{Input: "x", Index: 1, Count: 1, Mean: math.Inf(1)},
		{Input: "", Index: 2},
		{Input: "x", Index: 3, Sketch: &agentv1.Sketch{Keys: []int32{2, 1}, Counts: []uint64{1, 1}}},
	}
	d.Captured = [][]byte{[]byte(`{"inputs":[]}`), []byte(`not json`)}
	if res := ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: []*agentv1.TelemetryBatch{tbatch(1, telemetryT0, d)}}); res.Stored != 1 {
		t.Fatalf("%+v: the batch must be stored with its valid parts", res)
	}
	fs, err := st.FeatureWindow(ctx, "d", 1, telemetryT0, telemetryT0.Add(time.Hour))
	if err != nil || len(fs) != 1 || fs[0].Index != 0 || fs[0].Count != 3 {
		t.Fatalf("features %+v, %v; want only the valid x[0]", fs, err)
	}
	caps, err := st.CapturedInputs(ctx, "d", 0, 0)
	if err != nil || len(caps) != 1 || string(caps[0].Body) != `{"inputs":[]}` || caps[0].Agent != "a" || caps[0].Version != 1 {
		t.Fatalf("captured %+v, %v; want the one JSON body", caps, err)
	}
}

// TestDriftBadFeatureMergeSkipped: a summary that would merge into one
// already held in the same group commit (the path that merges its sketch
// straight from the wire) is skipped whole when its moments or its sketch
// are bad, and leaves the held summary as it was.
func TestDriftBadFeatureMergeSkipped(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	d1 := tdep("d", 1, 10, 0, 0)
	d1.Features = []*agentv1.FeatureSummary{tfeature("x", 0, 1, 2, 3), tfeature("x", 1, 7)}
	badSketch := tfeature("x", 0, 100, 200)
	badSketch.Sketch.Counts[0] = 0
	badMoments := tfeature("x", 1, 8)
	badMoments.M2 = -1
	d2 := tdep("d", 1, 10, 0, 0)
	d2.Features = []*agentv1.FeatureSummary{badSketch, badMoments, tfeature("x", 2, 4)}
	d3 := tdep("d", 1, 10, 0, 0)
	d3.Features = []*agentv1.FeatureSummary{tfeature("x", 0, 4), tfeature("x", 1, 9, 11)}
	res := ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: []*agentv1.TelemetryBatch{
		tbatch(1, telemetryT0, d1), tbatch(2, telemetryT0.Add(time.Second), d2), tbatch(3, telemetryT0.Add(2*time.Second), d3)}})
	if res.Stored != 3 {
		t.Fatalf("%+v: the batches must be stored with their valid parts", res)
	}
	fs, err := st.FeatureWindow(ctx, "d", 1, telemetryT0, telemetryT0.Add(time.Hour))
	if err != nil || len(fs) != 3 {
		t.Fatalf("features %+v, %v; want x[0], x[1], x[2]", fs, err)
	}
	for _, want := range []struct {
		idx      int
		count    uint64
		min, max float64
		mean     float64
	}{{0, 4, 1, 4, 2.5}, {1, 3, 7, 11, 9}, {2, 1, 4, 4, 4}} {
		f := fs[want.idx]
		sk, err := sketch.FromProto(f.Sketch)
		if err != nil {
			t.Fatalf("x[%d] sketch: %v", want.idx, err)
		}
		if f.Index != want.idx || f.Count != want.count || f.Min != want.min || f.Max != want.max ||
			math.Abs(f.Mean-want.mean) > 1e-12 || sk.Count() != want.count {
			t.Errorf("x[%d] = %+v (sketch count %d), want count %d, min %v, max %v, mean %v",
				want.idx, f, sk.Count(), want.count, want.min, want.max, want.mean)
		}
	}
}

func TestCapturedCap(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	var batches []*agentv1.TelemetryBatch
	per := maxCapturedPerDeployment/4 + 1
	for i := range 5 {
		d := tdep("d", 1, 1, 0, 0)
		for j := range per {
			d.Captured = append(d.Captured, fmt.Appendf(nil, `{"n":%d}`, i*per+j))
		}
		batches = append(batches, tbatch(uint64(i+1), telemetryT0.Add(time.Duration(i)*time.Second), d))
	}
	ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: batches})
	var got []hub.CapturedInput
	after := int64(0)
	for {
		page, err := st.CapturedInputs(ctx, "d", after, 3000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].ID
	}
	if len(got) != maxCapturedPerDeployment {
		t.Fatalf("%d captured kept, want the cap %d", len(got), maxCapturedPerDeployment)
	}
	// The newest are kept.
	want := fmt.Sprintf(`{"n":%d}`, 5*per-1)
	if string(got[len(got)-1].Body) != want {
		t.Errorf("last body %s, want %s", got[len(got)-1].Body, want)
	}
	if string(got[0].Body) != fmt.Sprintf(`{"n":%d}`, 5*per-maxCapturedPerDeployment) {
		t.Errorf("first body %s: the oldest must go first", got[0].Body)
	}
}

func TestDriftBaselineAndState(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	if _, err := st.DriftBaseline(ctx, "d", 1); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("no baseline: err %v, want ErrNotFound", err)
	}
	sk := sketch.New()
	for i := range 100 {
		sk.Add(float64(i))
	}
	b := hub.DriftBaseline{Deployment: "d", Version: 1, Source: "run w/r1 baseline.csv",
		Features: []hub.FeatureStats{{Input: "x", Index: 0, Count: 100, Mean: 49.5, Std: 28.866, Min: 0, Max: 99, Sketch: sk.Proto()}}}
	got, err := st.SetDriftBaseline(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != b.Source || len(got.Features) != 1 || got.Features[0].Count != 100 || math.Abs(got.Features[0].Std-28.866) > 1e-9 {
		t.Fatalf("stored baseline %+v", got)
	}
	// The first one stored wins.
	b2 := b
	b2.Source = hub.BaselineFromTelemetry
	if got, err := st.SetDriftBaseline(ctx, b2); err != nil || got.Source != b.Source {
		t.Errorf("second baseline: %v, %v; want the first kept", got.Source, err)
	}
	// Invalid: duplicate feature, bad sketch.
	bad := hub.DriftBaseline{Deployment: "d", Version: 2, Source: "telemetry",
		Features: []hub.FeatureStats{{Input: "x"}, {Input: "x"}}}
	if _, err := st.SetDriftBaseline(ctx, bad); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("duplicate feature: %v, want ErrInvalid", err)
	}
	bad.Features = []hub.FeatureStats{{Input: "x", Sketch: &agentv1.Sketch{Keys: []int32{1}}}}
	if _, err := st.SetDriftBaseline(ctx, bad); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad sketch: %v, want ErrInvalid", err)
	}
	if _, err := st.DriftBaseline(ctx, "d", 2); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("a rejected baseline was stored: %v", err)
	}

	if was, err := st.SetDrifting(ctx, "d", true); err != nil || was {
		t.Fatalf("SetDrifting = %v, %v; want false before", was, err)
	}
	if m, err := st.DriftingDeployments(ctx); err != nil || !m["d"] || len(m) != 1 {
		t.Fatalf("DriftingDeployments = %v, %v", m, err)
	}
	if was, err := st.SetDrifting(ctx, "d", false); err != nil || !was {
		t.Fatalf("SetDrifting = %v, %v; want true before", was, err)
	}
	if m, _ := st.DriftingDeployments(ctx); len(m) != 0 {
		t.Errorf("DriftingDeployments = %v, want none", m)
	}
}

// BenchmarkIngestFeatures ingests one agent's batch of one deployment with
// 64 feature summaries (the sample model's pixels), each new batch merged
// into the same minute's rows after the first.
func BenchmarkIngestFeatures(b *testing.B) {
	st, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	st.now = func() time.Time { return telemetryT0.Add(48 * time.Hour) }
	feats := make([]*agentv1.FeatureSummary, 64)
	for i := range feats {
		vals := make([]float64, 32)
		for j := range vals {
			vals[j] = float64((i*7 + j*3) % 17)
		}
		feats[i] = tfeature("pixels", uint32(i), vals...)
	}
	for _, n := range []int{0, 64} {
		b.Run(fmt.Sprintf("features=%d", n), func(b *testing.B) { benchIngest(b, st, feats[:n]) })
	}
}

func benchIngest(b *testing.B, st *Store, feats []*agentv1.FeatureSummary) {
	seq := uint64(len(feats)) << 32
	for b.Loop() {
		seq++
		d := tdep("d", 1, 32, 0, 0)
		d.Features = feats
		if _, err := st.IngestTelemetry(context.Background(), []hub.TelemetryUpload{{Agent: "a",
			Batches: []*agentv1.TelemetryBatch{tbatch(seq, telemetryT0.Add(time.Duration(seq%6)*time.Second), d)}}}); err != nil {
			b.Fatal(err)
		}
	}
}
