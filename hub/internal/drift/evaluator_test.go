package drift

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

type env struct {
	st    *sqlite.Store
	blobs *blobfs.Store
	ev    *Evaluator
	seq   uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "hub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bl, err := blobfs.Open(filepath.Join(dir, "blobs"), log)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(EvaluatorConfig{}, st, bl, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkspace(ctx, "w", ""); err != nil {
		t.Fatal(err)
	}
	return &env{st: st, blobs: bl, ev: ev}
}

// deploy registers model m (input "x", lineage runID if set) and deploys
// it as name.
func (e *env) deploy(t *testing.T, name, runID string) hub.Deployment {
	t.Helper()
	ctx := context.Background()
	mv, err := e.st.CreateModelVersion(ctx, "w", hub.ModelVersionCreate{Name: "m", Blob: hub.Blob{SHA256: strings.Repeat("ab", 32), Size: 10},
		IRVersion: 8, Opset: 17, Inputs: []hub.TensorSpec{{Name: "x", Datatype: "FP32"}}, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := hub.DeploymentCreate{Name: name, Model: mv.Ref(), Selector: map[string]string{"zone": "a"}}.Spec()
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.st.CreateDeployment(ctx, "w", spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// send ingests one batch at start whose x[0] holds 1000 evenly spaced
// quantiles of N(mu, 1), and x[1] the constant 3.
func (e *env) send(t *testing.T, d hub.Deployment, start time.Time, mu float64) {
	t.Helper()
	f0 := &agentv1.FeatureSummary{Input: "x", Index: 0}
	f1 := &agentv1.FeatureSummary{Input: "x", Index: 1, Count: 1000, Mean: 3, Min: 3, Max: 3}
	s0, s1 := sketch.New(), sketch.New()
	var m moments
	for j := range 1000 {
		v := mu + invPhi((float64(j)+0.5)/1000)
		s0.Add(v)
		m.add(v)
		s1.Add(3)
	}
	f0.Count, f0.Mean, f0.M2, f0.Min, f0.Max, f0.Sketch = m.n, m.mean, m.m2, m.lo, m.hi, s0.Proto()
	f1.Sketch = s1.Proto()
	e.seq++
	b := &agentv1.TelemetryBatch{Seq: e.seq, StartUnixNano: start.UnixNano(), EndUnixNano: start.Add(10 * time.Second).UnixNano(),
		Deployments: []*agentv1.DeploymentTelemetry{{Name: d.Name, ModelVersion: uint32(d.Version),
			Requests: map[string]uint64{"ok": 1000}, Features: []*agentv1.FeatureSummary{f0, f1}}}}
	res, err := e.st.IngestTelemetry(context.Background(), []hub.TelemetryUpload{{Agent: "edge-1", Batches: []*agentv1.TelemetryBatch{b}}})
	if err != nil || res.Stored != 1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
}

func (e *env) drifting(t *testing.T, name string) bool {
	t.Helper()
	m, err := e.st.DriftingDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m[name]
}

// TestShiftFlipsDrifting drives the evaluator through a telemetry
// baseline, a shifted window (drifting, drift_detected) and a return to
// the baseline's distribution (drift_resolved).
func TestShiftFlipsDrifting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	d := e.deploy(t, "d", "")
	t0 := time.Now().Add(-5 * time.Hour).Truncate(time.Minute)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	e.ev.now = func() time.Time { return at(30) }

	// Baseline pending: its window (60 minutes from the first) is not over.
	e.send(t, d, at(0), 0)
	rep, err := e.ev.Report(ctx, d, at(-30), at(30))
	if err != nil || rep.Status != hub.DriftPendingBaseline || len(rep.Features) != 2 {
		t.Fatalf("report %+v, %v; want pending_baseline with 2 features", rep, err)
	}
	for m := 1; m < 60; m += 10 {
		e.send(t, d, at(m), 0)
	}
	e.send(t, d, at(65), 0) // after the baseline window, same distribution
	e.ev.now = func() time.Time { return at(70) }
	if err := e.ev.EvaluateAll(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err = e.ev.Report(ctx, d, at(60), at(70))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != hub.DriftOK || rep.BaselineSource != hub.BaselineFromTelemetry || !rep.BaselineSince.Equal(at(0)) || !rep.BaselineUntil.Equal(at(60)) {
		t.Fatalf("report %+v, want ok against the telemetry baseline [t0, t0+60m)", rep)
	}
	if f := rep.Features[0]; f.BaselineCount != 7000 || f.Count != 1000 || f.PSI == nil || *f.PSI > 0.01 || f.Drifting {
		t.Errorf("x[0] %+v: want PSI about 0 on 7000 baseline values", f)
	}
	if e.drifting(t, "d") {
		t.Fatal("drifting before any shift")
	}

	// One sigma shift in the next window.
	for m := 75; m < 85; m += 2 {
		e.send(t, d, at(m), 1)
	}
	e.ev.now = func() time.Time { return at(130) }
	if err := e.ev.EvaluateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.drifting(t, "d") {
		t.Fatal("a 1σ shift did not flip drifting on")
	}
	rep, _ = e.ev.Report(ctx, d, at(70), at(130))
	if !rep.Drifting || !rep.Features[0].Drifting || rep.Features[1].Drifting || *rep.Features[1].PSI != 0 {
		t.Errorf("report %+v: want x[0] drifting, constant x[1] not", rep.Features)
	}
	// The deployment as stored is unaffected; the API fills Drifting.
	// Back to the baseline's distribution.
	for m := 135; m < 145; m += 2 {
		e.send(t, d, at(m), 0)
	}
	e.ev.now = func() time.Time { return at(191) }
	if err := e.ev.EvaluateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if e.drifting(t, "d") {
		t.Fatal("drifting stayed on after the inputs came back")
	}
	// A window with too few values is not judged and keeps the flag.
	e.ev.now = func() time.Time { return at(400) }
	if rep, _ := e.ev.Report(ctx, d, at(340), at(400)); rep.Status != hub.DriftNoData {
		t.Errorf("empty window: status %q, want no_data", rep.Status)
	}

	evs, err := e.st.ListEvents(ctx, hub.EventQuery{Deployment: "d"})
	if err != nil {
		t.Logf("events not readable (event store): %v", err)
		return
	}
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	if strings.Join(kinds, ",") != hub.EventDriftDetected+","+hub.EventDriftResolved {
		t.Errorf("events %v, want drift_detected then drift_resolved", kinds)
	}
}

func TestQuietFirstHourExtendsBaseline(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	d := e.deploy(t, "q", "")
	ev, err := NewEvaluator(EvaluatorConfig{Drift: Config{MinCount: 2000}}, e.st, e.blobs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-5 * time.Hour).Truncate(time.Minute)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	e.send(t, d, at(0), 0) // 1000 values in the first hour, under MinCount
	ev.now = func() time.Time { return at(65) }
	if _, ok, err := ev.Baseline(ctx, d); ok || err != nil {
		t.Fatalf("baseline made from 1000 values (ok %v, err %v); want it to wait for 2000", ok, err)
	}
	e.send(t, d, at(66), 0)
	ev.now = func() time.Time { return at(70).Add(30 * time.Second) }
	b, ok, err := ev.Baseline(ctx, d)
	if err != nil || !ok {
		t.Fatalf("baseline: ok %v, err %v", ok, err)
	}
	if !b.Until.Equal(at(70)) || b.Features[0].Count != 2000 {
		t.Errorf("baseline until %v with %d values; want the window extended to %v with 2000", b.Until, b.Features[0].Count, at(70))
	}
}

func TestBaselineFromRun(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	run, err := e.st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("x[0],x[1],label\n")
	for j := range 2000 {
		sb.WriteString(ftoa(invPhi((float64(j)+0.5)/2000)) + ",3,7\n")
	}
	blob, err := e.blobs.Put(ctx, strings.NewReader(sb.String()), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutArtifact(ctx, "w", run.ID, hub.Artifact{Path: hub.BaselineArtifact, Size: blob.Size, SHA256: blob.SHA256}); err != nil {
		t.Fatal(err)
	}
	d := e.deploy(t, "r", run.ID)
	e.ev.now = time.Now
	now := time.Now().Truncate(time.Minute)
	e.send(t, d, now.Add(-10*time.Minute), 0.5)
	rep, err := e.ev.Report(ctx, d, now.Add(-time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := "run w/" + run.ID + " baseline.csv"; rep.BaselineSource != want {
		t.Fatalf("baseline source %q, want %q", rep.BaselineSource, want)
	}
	if len(rep.Features) != 2 || rep.Features[0].BaselineCount != 2000 || rep.Features[1].BaselineMean != 3 {
		t.Fatalf("features %+v: want x[0] and x[1] from 2000 rows, label ignored", rep.Features)
	}
	// 0.5σ: PSI close to the closed form (about 0.25), drifting.
	if f := rep.Features[0]; f.PSI == nil || math.Abs(*f.PSI-wantShiftPSI(0.5)) > 0.03 || !f.Drifting {
		t.Errorf("x[0] %+v, want PSI about %.3f and drifting", f, wantShiftPSI(0.5))
	}
}

func TestParseBaselineCSVErrors(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"no input column", "a,b\n1,2\n", `no column names a model input (x)`},
		{"bad number", "x[0],x[1]\n1,2\n3,abc\n", `line 3 column 2 (x[1]): "abc": expected a finite number`},
		{"infinite", "x\n1\nInf\n", `line 3 column 1 (x): "Inf"`},
		{"bad index", "x[-1]\n1\n", `header column 1 "x[-1]"`},
		{"twice", "x,x[0]\n1,2\n", `x[0] named twice`},
		{"no rows", "x[0]\n", "no rows"},
		{"ragged", "x[0],x[1]\n1\n", "wrong number of fields"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBaselineCSV(strings.NewReader(c.csv), []string{"x"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %s", err, c.want)
			}
		})
	}
	fs, err := ParseBaselineCSV(strings.NewReader("label,x\n1,2\n0,\n1,NaN\n"), []string{"x"})
	if err != nil || len(fs) != 1 || fs[0].Count != 1 || fs[0].NaNCount != 2 || fs[0].Index != 0 {
		t.Errorf("x as index 0 with NaNs: %+v, %v", fs, err)
	}
	if _, err := NewEvaluator(EvaluatorConfig{Window: -time.Second}, nil, nil, nil); err == nil {
		t.Error("negative window accepted")
	}

}
