package telemetry

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

const nIn, nOut = 4, 3

// fixture is a real registry serving an ONNX MLP through ONNX Runtime, its
// runner wrapped by a Collector.
type fixture struct {
	reg *scoring.Registry
	c   *Collector
}

func newFixture(t *testing.T, mon *agentv1.MonitorOptions) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	dir := t.TempDir()
	c, err := New(Config{Stats: reg.Stats, DataDir: dir, CacheDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: reg, c: c}
	f.load(t, dir, "dep", 3, mon)
	return f
}

func (f *fixture) load(t *testing.T, dir, name string, version uint32, mon *agentv1.MonitorOptions) {
	t.Helper()
	p := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(p, onnxtest.MLP(nIn, []int{8}, nOut, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := ort.Open(p, ort.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	spec := &agentv1.DeploymentSpec{Name: name, Model: &agentv1.ModelRef{Version: version, Sha256: "abc123"}, Monitor: mon}
	if _, err := f.reg.Load(context.Background(), name, "3", f.c.Wrap(spec, r)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) infer(t *testing.T, rows [][]float32) {
	t.Helper()
	v, err := f.reg.Acquire("dep", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	var data []float32
	for _, r := range rows {
		data = append(data, r...)
	}
	if _, err := v.Infer(context.Background(), []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{int64(len(rows)), nIn}, Data: data}}); err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentDeltasSumToRequests(t *testing.T) {
	f := newFixture(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	total := 0
	for round, n := range []int{7, 0, 25} {
		for range n {
			f.infer(t, [][]float32{{rng.Float32(), rng.Float32(), rng.Float32(), rng.Float32()}})
		}
		total += n
		b := f.c.Collect()
		var ok, hist uint64
		for _, d := range b.Deployments {
			if d.Name != "dep" || d.ModelVersion != 3 || d.ModelSha256 != "abc123" {
				t.Fatalf("round %d: deployment entry %s v%d sha %q, want dep v3 sha abc123", round, d.Name, d.ModelVersion, d.ModelSha256)
			}
			ok += d.Requests["ok"]
			for _, c := range d.GetRequestSeconds().GetCounts() {
				hist += c
			}
		}
		if ok != uint64(n) || hist != uint64(n) {
			t.Fatalf("round %d: batch reports %d ok requests and %d request latencies, want %d", round, ok, hist, n)
		}
		if n == 0 && len(b.Deployments) != 0 {
			t.Fatalf("round %d: idle interval reports %d deployments, want none", round, len(b.Deployments))
		}
		if b.Agent.GetHostMemoryTotalBytes() == 0 || b.Agent.GetProcessRssBytes() == 0 || b.Agent.GetDiskTotalBytes() == 0 {
			t.Fatalf("round %d: agent figures missing: %v", round, b.Agent)
		}
		if u := b.Agent.GetHostCpuUtilization(); u < 0 || u > 1 {
			t.Fatalf("round %d: host cpu utilization %v outside [0,1]", round, u)
		}
		if b.EndUnixNano < b.StartUnixNano {
			t.Fatalf("round %d: interval [%d, %d) ends before it starts", round, b.StartUnixNano, b.EndUnixNano)
		}
	}
	if total != 32 {
		t.Fatal("test arithmetic")
	}
}

func TestFeatureSummariesMatchDirectComputation(t *testing.T) {
	f := newFixture(t, &agentv1.MonitorOptions{MaxFeatures: 3})
	rng := rand.New(rand.NewPCG(3, 4))
	var all [][]float32
	for i := range 40 {
		rows := make([][]float32, 1+i%3)
		for r := range rows {
			rows[r] = []float32{float32(rng.NormFloat64()*2 + 5), float32(rng.ExpFloat64()), float32(rng.IntN(10)), -1}
			if i == 7 && r == 0 {
				rows[r][1] = float32(math.NaN())
			}
		}
		all = append(all, rows...)
		f.infer(t, rows)
	}
	b := f.c.Collect()
	if len(b.Deployments) != 1 {
		t.Fatalf("got %d deployment entries, want 1", len(b.Deployments))
	}
	feats := b.Deployments[0].Features
	if len(feats) != 3 {
		t.Fatalf("got %d feature summaries, want 3 (max_features)", len(feats))
	}
	for j, fs := range feats {
		if fs.Input != "input" || fs.Index != uint32(j) {
			t.Fatalf("summary %d is %s[%d], want input[%d]", j, fs.Input, fs.Index, j)
		}
		var n, nan float64
		var sum, lo, hi = 0.0, math.Inf(1), math.Inf(-1)
		for _, r := range all {
			x := float64(r[j])
			if math.IsNaN(x) {
				nan++
				continue
			}
			n++
			sum += x
			lo, hi = min(lo, x), max(hi, x)
		}
		mean := sum / n
		var m2 float64
		for _, r := range all {
			if x := float64(r[j]); !math.IsNaN(x) {
				m2 += (x - mean) * (x - mean)
			}
		}
		if float64(fs.Count) != n || float64(fs.NanCount) != nan {
			t.Fatalf("input[%d]: count %d nan %d, want %v and %v", j, fs.Count, fs.NanCount, n, nan)
		}
		sk, err := sketch.FromProto(fs.Sketch)
		if err != nil {
			t.Fatalf("input[%d]: sketch: %v", j, err)
		}
		var vals []float64
		for _, r := range all {
			if x := float64(r[j]); !math.IsNaN(x) {
				vals = append(vals, x)
			}
		}
		slices.Sort(vals)
		med := vals[(len(vals)-1)/2]
		if sk.Count() != fs.Count || math.Abs(sk.Quantile(0.5)-med) > 0.02*math.Abs(med)+1e-9 {
			t.Fatalf("input[%d]: sketch count %d median %v, want %d and %v (±2%%)", j, sk.Count(), sk.Quantile(0.5), fs.Count, med)
		}
		if !near(fs.Mean, mean) || !near(fs.M2, m2) || fs.Min != lo || fs.Max != hi {
			t.Fatalf("input[%d]: mean %v m2 %v min %v max %v, want %v %v %v %v", j, fs.Mean, fs.M2, fs.Min, fs.Max, mean, m2, lo, hi)
		}
	}
	if b2 := f.c.Collect(); len(b2.Deployments) != 0 {
		t.Fatalf("second collect without requests reports %v", b2.Deployments)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func TestCaptureAllAsV2Bodies(t *testing.T) {
	f := newFixture(t, &agentv1.MonitorOptions{DisableFeatures: true, CaptureFraction: 1})
	f.infer(t, [][]float32{{1.5, 2, 3, 4}, {5, 6, 7, 8.25}})
	b := f.c.Collect()
	if len(b.Deployments) != 1 || len(b.Deployments[0].Captured) != 2 {
		t.Fatalf("want one deployment with 2 captured samples, got %v", b.Deployments)
	}
	if len(b.Deployments[0].Features) != 0 {
		t.Fatal("features summarized although disabled")
	}
	var req struct {
		Inputs []struct {
			Name, Datatype string
			Shape          []int64
			Data           []float64
		}
	}
	if err := json.Unmarshal(b.Deployments[0].Captured[1], &req); err != nil {
		t.Fatal(err)
	}
	in := req.Inputs[0]
	if in.Name != "input" || in.Datatype != "FP32" || len(in.Shape) != 2 || in.Shape[0] != 1 || in.Shape[1] != 4 ||
		len(in.Data) != 4 || in.Data[0] != 5 || in.Data[3] != 8.25 {
		t.Fatalf("captured body %s, want the second sample with shape [1,4]", b.Deployments[0].Captured[1])
	}
}

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint32
		ok   bool
	}{{"3", 3, true}, {"3-reload", 3, true}, {"x", 0, false}, {"-reload", 0, false}} {
		got, err := ParseVersion(c.in)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseVersion(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// BenchmarkWrapped compares a bare ONNX Runtime run with the wrapped one
// (256-feature summaries on by default).
func BenchmarkWrapped(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(p, onnxtest.MLP(nIn, []int{8}, nOut, 1), 0o600); err != nil {
		b.Fatal(err)
	}
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, nIn}, Data: []float32{0.5, -1, 2, 0.25}}}
	for _, wrapped := range []bool{false, true} {
		name := "bare"
		if wrapped {
			name = "wrapped"
		}
		b.Run(name, func(b *testing.B) {
			r, err := ort.Open(p, ort.Config{}, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var run scoring.Runner = r
			if wrapped {
				c, _ := New(Config{}, nil)
				run = c.Wrap(&agentv1.DeploymentSpec{Name: "d", Model: &agentv1.ModelRef{Version: 1}}, r)
			}
			ctx := context.Background()
			cpu0 := cpuNanos()
			for b.Loop() {
				if _, err := run.Run(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkObserve is the wrapper's own cost per Run: summaries (and
// sketches) of every summarized element of a batch.
func BenchmarkObserve(b *testing.B) {
	for _, c := range []struct {
		name        string
		rows, width int
	}{{"rows=1/features=4", 1, 4}, {"rows=8/features=256", 8, 256}} {
		b.Run(c.name, func(b *testing.B) {
			col, _ := New(Config{}, nil)
			o := newObserver(col, DefaultMaxFeatures, 0, []scoring.TensorSpec{{Name: "x", DataType: scoring.Float32}})
			data := make([]float32, c.rows*c.width)
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range data {
				data[i] = float32(rng.NormFloat64())
			}
			in := []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: []int64{int64(c.rows), int64(c.width)}, Data: data}}
			cpu0 := cpuNanos()
			for b.Loop() {
				o.observe(in)
			}
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/float64(c.rows*c.width), "cpu-ns/element")
		})
	}
}

// cpuNanos is the process's user+system CPU time: on a shared machine it
// is steadier than wall time.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func TestReloadAndDeviceDeltas(t *testing.T) {
	f := newFixture(t, nil)
	devs := map[string]DeviceStats{"dep": {Backend: "fpga", Faults: 2, Fallbacks: 5}}
	f.c.cfg.Devices = func() map[string]DeviceStats { return devs }
	f.infer(t, [][]float32{{1, 2, 3, 4}})
	// The edge server reloads version 3 under "3-reload", then "3".
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(p, onnxtest.MLP(nIn, []int{8}, nOut, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := ort.Open(p, ort.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	spec := &agentv1.DeploymentSpec{Name: "dep", Model: &agentv1.ModelRef{Version: 3, Sha256: "def456"}}
	if _, err := f.reg.Swap(context.Background(), "dep", "3-reload", f.c.Wrap(spec, r)); err != nil {
		t.Fatal(err)
	}
	f.infer(t, [][]float32{{1, 2, 3, 4}})
	f.infer(t, [][]float32{{1, 2, 3, 4}})
	b := f.c.Collect()
	// One entry per version (the hub refuses two), with the reload's digest.
	if len(b.Deployments) != 1 {
		t.Fatalf("got %d entries, want one for version 3", len(b.Deployments))
	}
	cur := b.Deployments[0]
	var lat uint64
	for _, c := range cur.GetRequestSeconds().GetCounts() {
		lat += c
	}
	if cur.ModelVersion != 3 || cur.Requests["ok"] != 3 || lat != 3 || cur.ModelSha256 != "def456" {
		t.Fatalf("entry v%d %v (%d latencies) sha %q, want v3 with 3 ok and 3 latencies, sha def456", cur.ModelVersion, cur.Requests, lat, cur.ModelSha256)
	}
	if cur.Backend != "fpga" || cur.DeviceFaults != 2 || cur.CpuFallbacks != 5 {
		t.Fatalf("device figures %q %d %d, want fpga 2 5", cur.Backend, cur.DeviceFaults, cur.CpuFallbacks)
	}
	// Requests the first load answered in an interval of their own keep
	// its digest after the reload.
	f.infer(t, [][]float32{{1, 2, 3, 4}})
	spec2 := &agentv1.DeploymentSpec{Name: "dep", Model: &agentv1.ModelRef{Version: 3, Sha256: "0a0b0c"}}
	r2, err := ort.Open(p, ort.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Swap(context.Background(), "dep", "3", f.c.Wrap(spec2, r2)); err != nil {
		t.Fatal(err)
	}
	if b := f.c.Collect(); len(b.Deployments) != 1 || b.Deployments[0].ModelSha256 != "def456" || b.Deployments[0].Requests["ok"] != 1 {
		t.Fatalf("after a reload, the previous load's requests are reported as %v, want 1 ok with sha def456", b.Deployments)
	}
	devs = map[string]DeviceStats{"dep": {Backend: "fpga", Faults: 2, Fallbacks: 5}}
	f.infer(t, [][]float32{{1, 2, 3, 4}})
	f.c.Collect()
	devs = map[string]DeviceStats{"dep": {Backend: "cpu-fallback", Faults: 3, Fallbacks: 5}}
	b = f.c.Collect()
	if len(b.Deployments) != 1 || b.Deployments[0].DeviceFaults != 1 || b.Deployments[0].CpuFallbacks != 0 || b.Deployments[0].Backend != "cpu-fallback" {
		t.Fatalf("second interval %v, want one entry with 1 new fault, 0 fallbacks, backend cpu-fallback", b.Deployments)
	}
}

func TestCaptureBudget(t *testing.T) {
	f := newFixture(t, &agentv1.MonitorOptions{CaptureFraction: 1})
	f.c.cfg.CaptureBytes = 300 // about three bodies of one 4-float sample
	for range 10 {
		f.infer(t, [][]float32{{1.25, 2, 3, 4}})
	}
	b := f.c.Collect()
	var n, size int
	for _, c := range b.Deployments[0].Captured {
		n++
		size += len(c)
	}
	if n == 0 || n == 10 || size > 300 || f.c.CaptureSkipped() != uint64(10-n) {
		t.Fatalf("captured %d bodies (%d bytes), skipped %d; want some but not all 10, at most 300 bytes, the rest skipped", n, size, f.c.CaptureSkipped())
	}
	// The budget is per batch: the next interval captures again.
	f.infer(t, [][]float32{{1.25, 2, 3, 4}})
	if b := f.c.Collect(); len(b.Deployments) != 1 || len(b.Deployments[0].Captured) != 1 {
		t.Fatalf("next interval captured %v, want 1 body", b.Deployments)
	}
}
