package drift

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/sketch"
)

// Evaluator defaults.
const (
	DefaultInterval       = time.Minute
	DefaultWindow         = time.Hour
	DefaultBaselineWindow = time.Hour
	DefaultRetention      = 7 * 24 * time.Hour
	// MaxBaselineBytes bounds the baseline artifact read.
	MaxBaselineBytes = 256 << 20
)

// EvaluatorConfig configures an Evaluator. Zero fields take the defaults.
type EvaluatorConfig struct {
	Drift Config
	// Interval between evaluations of every deployment (1m).
	Interval time.Duration
	// Window is the recent telemetry compared with the baseline (1h).
	Window time.Duration
	// BaselineWindow is how much telemetry, from the first minute a model
	// version reported features, makes its baseline when its training run
	// left none (1h).
	BaselineWindow time.Duration
	// Retention is how long per-minute feature summaries are kept (7 days).
	Retention time.Duration
}

func (c EvaluatorConfig) withDefaults() (EvaluatorConfig, error) {
	var err error
	if c.Drift, err = c.Drift.WithDefaults(); err != nil {
		return c, err
	}
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&c.Interval, DefaultInterval}, {&c.Window, DefaultWindow}, {&c.BaselineWindow, DefaultBaselineWindow}, {&c.Retention, DefaultRetention}} {
		if *d.p == 0 {
			*d.p = d.def
		}
		if *d.p < 0 {
			return c, fmt.Errorf("drift evaluator: negative duration %s", *d.p)
		}
	}
	return c, nil
}

// Store is what the Evaluator reads and writes.
type Store interface {
	hub.DriftStore
	ListWorkspaces(ctx context.Context) ([]hub.Workspace, error)
	ListDeployments(ctx context.Context, ws string) ([]hub.Deployment, error)
	GetModelVersion(ctx context.Context, ws, name string, ref hub.VersionRef) (hub.ModelVersion, error)
	GetArtifact(ctx context.Context, ws, id, path string) (hub.Artifact, error)
	AddEvent(ctx context.Context, e hub.Event) (hub.Event, error)
}

// Evaluator judges deployments' input drift: on demand (Report) and every
// Interval (Run), when it records the drifting flag and the
// drift_detected and drift_resolved events. Safe for concurrent use; it
// owns neither the store nor the blobs.
type Evaluator struct {
	cfg   EvaluatorConfig
	store Store
	blobs hub.Blobs
	log   *slog.Logger
	now   func() time.Time
}

// NewEvaluator returns an evaluator; the error names a bad config field.
func NewEvaluator(cfg EvaluatorConfig, store Store, blobs hub.Blobs, log *slog.Logger) (*Evaluator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Evaluator{cfg: cfg, store: store, blobs: blobs, log: log, now: time.Now}, nil
}

// Run evaluates every deployment every Interval until ctx ends. Errors
// are logged and retried at the next round.
func (e *Evaluator) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if err := e.EvaluateAll(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("drift evaluation failed; retrying at the next round", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// EvaluateAll judges every deployment over the last Window and records
// changes of its drifting flag, with an event each. A deployment not
// judged (baseline pending, too few values) keeps its flag. It also
// prunes feature summaries older than Retention.
func (e *Evaluator) EvaluateAll(ctx context.Context) error {
	now := e.now()
	wss, err := e.store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	var errs []error
	for _, ws := range wss {
		deps, err := e.store.ListDeployments(ctx, ws.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range deps {
			live[d.Name] = true
			rep, err := e.Report(ctx, d, now.Add(-e.cfg.Window), now)
			if err != nil {
				errs = append(errs, fmt.Errorf("deployment %q: %w", d.Name, err))
				continue
			}
			if rep.Status != hub.DriftOK && rep.Status != hub.DriftDrifting {
				continue
			}
			if err := e.record(ctx, rep); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// A deleted deployment stops drifting (its name may be reused).
	if drifting, err := e.store.DriftingDeployments(ctx); err == nil {
		for name := range drifting {
			if !live[name] {
				if _, err := e.store.SetDrifting(ctx, name, false); err != nil {
					errs = append(errs, err)
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	if _, err := e.store.PruneDrift(ctx, now.Add(-e.cfg.Retention)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// record stores rep's drifting flag and, when it changed, an event.
func (e *Evaluator) record(ctx context.Context, rep hub.DriftReport) error {
	was, err := e.store.SetDrifting(ctx, rep.Deployment, rep.Drifting)
	if err != nil || was == rep.Drifting {
		return err
	}
	ev := hub.Event{Kind: hub.EventDriftResolved, Deployment: rep.Deployment,
		Attrs: map[string]string{"model": rep.Model, "version": strconv.Itoa(rep.Version), "baseline": rep.BaselineSource}}
	var names []string
	worst := 0.0
	for _, f := range rep.Features {
		if f.PSI != nil {
			worst = max(worst, *f.PSI)
		}
		if f.Drifting {
			names = append(names, fmt.Sprintf("%s[%d]", f.Input, f.Index))
		}
	}
	ev.Attrs["max_psi"] = strconv.FormatFloat(worst, 'f', 4, 64)
	if rep.Drifting {
		ev.Kind = hub.EventDriftDetected
		if len(names) > 10 {
			names = append(names[:10], fmt.Sprintf("and %d more", len(names)-10))
		}
		ev.Attrs["features"] = strings.Join(names, ", ")
		ev.Message = fmt.Sprintf("inputs of %s drift from the baseline: PSI up to %.3f (threshold %g)", rep.Deployment, worst, rep.Threshold)
	} else {
		ev.Message = fmt.Sprintf("inputs of %s back within the drift threshold (PSI up to %.3f)", rep.Deployment, worst)
	}
	e.log.Info("drift", "deployment", rep.Deployment, "drifting", rep.Drifting, "max_psi", worst)
	if _, err := e.store.AddEvent(ctx, ev); err != nil {
		// The event log is best effort here: the flag is recorded.
		e.log.Error("record drift event", "deployment", rep.Deployment, "kind", ev.Kind, "error", err)
	}
	return nil
}

// Report compares d's inputs in [since, until) with its baseline, making
// the baseline first if it can (see Baseline).
func (e *Evaluator) Report(ctx context.Context, d hub.Deployment, since, until time.Time) (hub.DriftReport, error) {
	rep := hub.DriftReport{Deployment: d.Name, Model: d.Model, Version: d.Version, Since: since, Until: until,
		Threshold: e.cfg.Drift.Threshold, MinCount: e.cfg.Drift.MinCount, Features: []hub.FeatureDrift{}}
	base, ok, err := e.Baseline(ctx, d)
	if err != nil {
		return rep, err
	}
	cur, err := e.store.FeatureWindow(ctx, d.Name, d.Version, since, until)
	if err != nil {
		return rep, err
	}
	if !ok {
		rep.Status = hub.DriftPendingBaseline
		for _, f := range cur {
			rep.Features = append(rep.Features, hub.FeatureDrift{Input: f.Input, Index: f.Index, Count: f.Count, Mean: f.Mean, NaNCount: f.NaNCount})
		}
		return rep, nil
	}
	rep.BaselineSource, rep.BaselineSince, rep.BaselineUntil = base.Source, base.Since, base.Until
	byKey := map[string]hub.FeatureStats{}
	key := func(input string, idx int) string { return input + "\x00" + strconv.Itoa(idx) }
	for _, f := range cur {
		byKey[key(f.Input, f.Index)] = f
	}
	judged := false
	for _, b := range base.Features {
		c := byKey[key(b.Input, b.Index)]
		delete(byKey, key(b.Input, b.Index))
		fd := hub.FeatureDrift{Input: b.Input, Index: b.Index, BaselineCount: b.Count, Count: c.Count,
			BaselineMean: b.Mean, Mean: c.Mean, NaNCount: c.NaNCount}
		bs, err := sketch.FromProto(b.Sketch)
		if err != nil {
			return rep, fmt.Errorf("baseline of %s[%d]: %w", b.Input, b.Index, err)
		}
		cs, err := sketch.FromProto(c.Sketch)
		if err != nil {
			return rep, fmt.Errorf("window of %s[%d]: %w", b.Input, b.Index, err)
		}
		r := e.cfg.Drift.Compare(bs, cs)
		if !math.IsNaN(r.PSI) {
			fd.PSI, fd.KS = &r.PSI, &r.KS
		}
		fd.Judged, fd.Drifting = r.Judged, r.Drifting
		judged = judged || r.Judged
		rep.Drifting = rep.Drifting || r.Drifting
		rep.Features = append(rep.Features, fd)
	}
	// Features the baseline does not have are listed, never judged.
	for _, f := range cur {
		if _, extra := byKey[key(f.Input, f.Index)]; extra {
			rep.Features = append(rep.Features, hub.FeatureDrift{Input: f.Input, Index: f.Index, Count: f.Count, Mean: f.Mean, NaNCount: f.NaNCount})
		}
	}
	switch {
	case rep.Drifting:
		rep.Status = hub.DriftDrifting
	case judged:
		rep.Status = hub.DriftOK
	default:
		rep.Status = hub.DriftNoData
	}
	return rep, nil
}

// Baseline returns d's baseline, making and storing it when it can: from
// the training run's BaselineArtifact when d's model version was
// registered from a run that has one, otherwise from the first
// BaselineWindow of telemetry once that window is over, extended (through
// the last whole minute) until some feature counted MinCount values. ok is false while
// no baseline can be made yet. A baseline artifact that cannot be read is
// logged and the telemetry baseline is used instead.
func (e *Evaluator) Baseline(ctx context.Context, d hub.Deployment) (b hub.DriftBaseline, ok bool, err error) {
	b, err = e.store.DriftBaseline(ctx, d.Name, d.Version)
	if err == nil {
		return b, true, nil
	}
	if !errors.Is(err, hub.ErrNotFound) {
		return b, false, err
	}
	if fs, src, err := e.runBaseline(ctx, d); err != nil {
		e.log.Warn("drift baseline from the training run failed; using telemetry", "deployment", d.Name, "error", err)
	} else if src != "" {
		b, err := e.store.SetDriftBaseline(ctx, hub.DriftBaseline{Deployment: d.Name, Version: d.Version, Source: src, Features: fs})
		return b, err == nil, err
	}
	first, err := e.store.FirstFeatureTime(ctx, d.Name, d.Version)
	if err != nil || first.IsZero() {
		return b, false, err
	}
	end := first.Add(e.cfg.BaselineWindow)
	if e.now().Before(end) {
		return b, false, nil
	}
	fs, err := e.store.FeatureWindow(ctx, d.Name, d.Version, first, end)
	if err != nil {
		return b, false, err
	}
	if maxCount(fs) < e.cfg.Drift.MinCount {
		// Too little traffic to judge anything against: extend the window
		// through the last whole minute until it holds MinCount values.
		end = e.now().Truncate(time.Minute)
		if fs, err = e.store.FeatureWindow(ctx, d.Name, d.Version, first, end); err != nil || maxCount(fs) < e.cfg.Drift.MinCount {
			return b, false, err
		}
	}
	b, err = e.store.SetDriftBaseline(ctx, hub.DriftBaseline{Deployment: d.Name, Version: d.Version,
		Source: hub.BaselineFromTelemetry, Since: first, Until: end, Features: fs})
	return b, err == nil, err
}

func maxCount(fs []hub.FeatureStats) uint64 {
	var n uint64
	for _, f := range fs {
		n = max(n, f.Count)
	}
	return n
}

// runBaseline reads the baseline artifact of d's training run; src is
// empty when there is none.
func (e *Evaluator) runBaseline(ctx context.Context, d hub.Deployment) (fs []hub.FeatureStats, src string, err error) {
	mv, err := e.store.GetModelVersion(ctx, d.Workspace, d.Model, hub.VersionRef{Version: d.Version})
	if err != nil || mv.RunID == "" {
		return nil, "", err
	}
	// Beside the model file first (a run may save several models), then
	// at the top of the run's artifacts.
	var art hub.Artifact
	for _, p := range slices.Compact([]string{path.Join(path.Dir(mv.ArtifactPath), hub.BaselineArtifact), hub.BaselineArtifact}) {
		if art, err = e.store.GetArtifact(ctx, d.Workspace, mv.RunID, p); err == nil || !errors.Is(err, hub.ErrNotFound) {
			break
		}
	}
	if errors.Is(err, hub.ErrNotFound) {
		return nil, "", nil
	} else if err != nil {
		return nil, "", err
	}
	rc, _, err := e.blobs.Open(ctx, art.SHA256)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	var inputs []string
	for _, in := range mv.Inputs {
		inputs = append(inputs, in.Name)
	}
	fs, err = ParseBaselineCSV(io.LimitReader(rc, MaxBaselineBytes), inputs)
	if err != nil {
		return nil, "", fmt.Errorf("run %s artifact %s: %w", mv.RunID, art.Path, err)
	}
	return fs, fmt.Sprintf("%s %s/%s %s", hub.BaselineFromRun, d.Workspace, mv.RunID, art.Path), nil
}

// ParseBaselineCSV reads a baseline artifact (hub.BaselineArtifact): a
// header naming columns INPUT[INDEX] or INPUT (index 0), then one row of
// numbers per sample. Only columns naming one of inputs are read; others
// (a label) are ignored. Empty cells and "NaN" count as NaN. The error
// names the line and column of a bad cell; a file without any input column
// or without rows is an error too.
func ParseBaselineCSV(r io.Reader, inputs []string) ([]hub.FeatureStats, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	header = slices.Clone(header) // ReuseRecord reuses its backing array

	type col struct {
		at    int
		input string
		index int
		st    moments
		sk    *sketch.Sketch
	}
	var cols []*col
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		name, idx := h, 0
		if open := strings.IndexByte(h, '['); open > 0 && strings.HasSuffix(h, "]") {
			n, err := strconv.Atoi(h[open+1 : len(h)-1])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("header column %d %q: expected INPUT[INDEX] with INDEX >= 0", i+1, h)
			}
			name, idx = h[:open], n
		}
		if !slices.Contains(inputs, name) {
			continue
		}
		k := name + "[" + strconv.Itoa(idx) + "]"
		if seen[k] {
			return nil, fmt.Errorf("header column %d %q: %s named twice", i+1, h, k)
		}
		seen[k] = true
		cols = append(cols, &col{at: i, input: name, index: idx, sk: sketch.New()})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("header %q: no column names a model input (%s) as INPUT or INPUT[INDEX]",
			strings.Join(header, ","), strings.Join(inputs, ", "))
	}
	rows := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		rows++
		line, _ := cr.FieldPos(0)
		for _, c := range cols {
			s := strings.TrimSpace(rec[c.at])
			v := math.NaN()
			if s != "" {
				if v, err = strconv.ParseFloat(s, 64); err != nil || math.IsInf(v, 0) {
					return nil, fmt.Errorf("line %d column %d (%s): %q: expected a finite number", line, c.at+1, header[c.at], s)
				}
			}
			c.st.add(v)
			c.sk.Add(v)
		}
	}
	if rows == 0 {
		return nil, errors.New("no rows after the header")
	}
	out := make([]hub.FeatureStats, 0, len(cols))
	for _, c := range cols {
		out = append(out, c.st.stats(c.input, c.index, c.sk))
	}
	slices.SortFunc(out, func(a, b hub.FeatureStats) int {
		if c := strings.Compare(a.Input, b.Input); c != 0 {
			return c
		}
		return a.Index - b.Index
	})
	return out, nil
}

// moments are running count, mean and squared deviations (Welford).
type moments struct {
	n, nan   uint64
	mean, m2 float64
	lo, hi   float64
}

func (m *moments) add(v float64) {
	if math.IsNaN(v) {
		m.nan++
		return
	}
	if m.n == 0 {
		m.lo, m.hi = v, v
	}
	m.n++
	d := v - m.mean
	m.mean += d / float64(m.n)
	m.m2 += d * (v - m.mean)
	m.lo, m.hi = min(m.lo, v), max(m.hi, v)
}

func (m *moments) stats(input string, idx int, sk *sketch.Sketch) hub.FeatureStats {
	f := hub.FeatureStats{Input: input, Index: idx, Count: m.n, NaNCount: m.nan, Mean: m.mean, Min: m.lo, Max: m.hi, Sketch: sk.Proto()}
	if m.n > 0 {
		f.Std = math.Sqrt(m.m2 / float64(m.n))
	}
	return f
}

// Run makes an evaluator with cfg and runs it until ctx ends (see
// Evaluator.Run); a bad cfg is logged and nothing runs.
func Run(ctx context.Context, cfg EvaluatorConfig, store Store, blobs hub.Blobs, log *slog.Logger) {
	e, err := NewEvaluator(cfg, store, blobs, log)
	if err != nil {
		log.Error("drift evaluator not started", "error", err)
		return
	}
	e.Run(ctx)
}
