package scoring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Batch is the default queueing and batching of every loaded version.
	Batch BatchConfig
	// WarmUpTimeout bounds the warm-up inference of a load (default 1 min).
	WarmUpTimeout time.Duration
}

// Registry holds the loaded models, each with one or more versions, and
// routes requests to them. One version of each model is current: the one
// requests without a version go to, normally the last loaded.
//
// Every method is safe for concurrent use. The registry owns the Runners
// given to Load and closes them on Unload, Swap or Close.
type Registry struct {
	cfg RegistryConfig
	log *slog.Logger

	mu     sync.RWMutex
	models map[string]*model
	closed bool

	loads   atomic.Uint64 // Version.id source
	statsMu sync.Mutex
	retired []*Version // the last maxRetired unloaded versions, for Stats
}

type model struct {
	versions map[string]*Version
	current  *Version
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg RegistryConfig, log *slog.Logger) (*Registry, error) {
	if err := cfg.Batch.Validate(); err != nil {
		return nil, err
	}
	if cfg.WarmUpTimeout <= 0 {
		cfg.WarmUpTimeout = time.Minute
	}
	return &Registry{cfg: cfg, log: log, models: map[string]*model{}}, nil
}

// Version is one loaded model version. Get one with Registry.Acquire and give
// it back with Release; between the two it will not be closed.
type Version struct {
	Model    string
	Version  string
	LoadedAt time.Time

	id      uint64 // unique per load in this registry (VersionStats.ID)
	runner  Runner
	sig     Signature
	b       *batcher
	metrics *versionMetrics

	mu       sync.Mutex
	inflight int
	draining bool
	drained  chan struct{}
}

// Signature returns the version's inputs and outputs.
func (v *Version) Signature() Signature { return v.sig }

// Batching reports whether requests to this version are merged.
func (v *Version) Batching() bool { return v.b.batchable }

// Infer validates inputs against the signature, queues them and waits for
// the outputs (in signature order) or ctx. Errors: ErrInvalidInput,
// ErrQueueFull, ErrBackend, or ctx.Err().
//
// Each call counts in the version's metrics.
func (v *Version) Infer(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	start := time.Now()
	in, err := v.sig.Validate(inputs)
	var out []Tensor
	if err == nil {
		out, err = v.b.submit(ctx, in)
	}
	v.metrics.requests[outcomeOf(err)].Add(1)
	v.metrics.request.observe(time.Since(start).Seconds())
	return out, err
}

func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, ErrInvalidInput):
		return outcomeInvalid
	case errors.Is(err, ErrQueueFull):
		return outcomeQueueFull
	case errors.Is(err, ErrUnavailable):
		return outcomeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return outcomeTimeout
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	}
	return outcomeError
}

// Release ends a use started by Acquire.
func (v *Version) Release() {
	v.mu.Lock()
	v.inflight--
	if v.draining && v.inflight == 0 {
		close(v.drained)
	}
	v.mu.Unlock()
}

// LoadOption adjusts one Load.
type LoadOption func(*loadOptions)

type loadOptions struct {
	batch      *BatchConfig
	notCurrent bool
	warmUp     []Tensor
}

// WithWarmUp sets the warm-up request (in signature order) instead of the
// default: ones, then zeros if ones fail.
func WithWarmUp(inputs []Tensor) LoadOption { return func(o *loadOptions) { o.warmUp = inputs } }

// WithBatch overrides the registry's batch config for this version.
func WithBatch(c BatchConfig) LoadOption { return func(o *loadOptions) { o.batch = &c } }

// NotCurrent loads the version without routing unversioned requests to it
// (unless it is the model's only version).
func NotCurrent() LoadOption { return func(o *loadOptions) { o.notCurrent = true } }

// Load warms r up with one inference (see WithWarmUp) and then makes it
// version of model name, current unless NotCurrent is given. Other versions keep
// serving. The registry owns r from this call on: if Load fails, r is
// closed. An empty version picks one above the highest numeric version.
// It returns the version's name.
func (r *Registry) Load(ctx context.Context, name, version string, run Runner, opts ...LoadOption) (string, error) {
	var o loadOptions
	for _, f := range opts {
		f(&o)
	}
	bc := r.cfg.Batch
	if o.batch != nil {
		if err := o.batch.Validate(); err != nil {
			run.Close()
			return "", err
		}
		bc = *o.batch
	}
	if name == "" {
		run.Close()
		return "", fmt.Errorf("load model: %w: empty name", ErrInvalidInput)
	}
	r.mu.RLock()
	if version == "" {
		version = r.nextVersionLocked(name)
	}
	_, exists := r.lookupLocked(name, version)
	r.mu.RUnlock()
	if exists {
		run.Close()
		return "", fmt.Errorf("load model %q version %q: %w", name, version, ErrExists)
	}
	sig := run.Signature()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.WarmUpTimeout)
	start := time.Now()
	var err error
	if o.warmUp != nil {
		_, err = run.Run(wctx, o.warmUp)
	} else if _, err = run.Run(wctx, sig.OneInputs()); err != nil {
		_, err = run.Run(wctx, sig.ZeroInputs())
	}
	cancel()
	if err != nil {
		run.Close()
		return "", fmt.Errorf("load model %q version %q: warm-up: %w", name, version, err)
	}
	m := newVersionMetrics()
	v := &Version{Model: name, Version: version, LoadedAt: time.Now(), id: r.loads.Add(1), runner: run, sig: sig, metrics: m, drained: make(chan struct{})}
	v.b = newBatcher(run, bc, m)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		v.b.close()
		run.Close()
		return "", fmt.Errorf("load model %q version %q: %w: registry closed", name, version, ErrUnavailable)
	}
	if _, exists := r.lookupLocked(name, version); exists {
		r.mu.Unlock()
		v.b.close()
		run.Close()
		return "", fmt.Errorf("load model %q version %q: %w", name, version, ErrExists)
	}
	md := r.models[name]
	if md == nil {
		md = &model{versions: map[string]*Version{}}
		r.models[name] = md
	}
	md.versions[version] = v
	if md.current == nil || !o.notCurrent {
		md.current = v
	}
	r.mu.Unlock()
	r.log.Info("model loaded", "model", name, "version", version, "inputs", len(sig.Inputs), "outputs", len(sig.Outputs),
		"batching", v.b.batchable, "warm_up", time.Since(start).Round(time.Microsecond))
	return version, nil
}

func (r *Registry) nextVersionLocked(name string) string {
	n := 0
	if md := r.models[name]; md != nil {
		for v := range md.versions {
			if k, err := strconv.Atoi(v); err == nil && k > n {
				n = k
			}
		}
	}
	return strconv.Itoa(n + 1)
}

func (r *Registry) lookupLocked(name, version string) (*Version, bool) {
	md := r.models[name]
	if md == nil {
		return nil, false
	}
	if version == "" {
		return md.current, md.current != nil
	}
	v, ok := md.versions[version]
	return v, ok
}

// Swap loads run as a new version of name, switches traffic to it
// atomically, then unloads every other version of name, each after its
// in-flight requests finish. Requests are never refused during a swap. It
// returns the new version's name.
func (r *Registry) Swap(ctx context.Context, name, version string, run Runner, opts ...LoadOption) (string, error) {
	version, err := r.Load(ctx, name, version, run, opts...)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	var old []*Version
	if md := r.models[name]; md != nil {
		md.current = md.versions[version]
		for k, v := range md.versions {
			if k != version {
				old = append(old, v)
				delete(md.versions, k)
				r.startDrainLocked(v)
			}
		}
	}
	r.mu.Unlock()
	return version, r.finishDrains(ctx, old)
}

// Unload stops routing to the version (version "" means the current one),
// waits for its in-flight requests and closes it. If it was current, the
// most recently loaded remaining version becomes current.
func (r *Registry) Unload(ctx context.Context, name, version string) error {
	r.mu.Lock()
	v, ok := r.lookupLocked(name, version)
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("unload model %q version %q: %w", name, version, ErrModelNotFound)
	}
	md := r.models[name]
	delete(md.versions, v.Version)
	if md.current == v {
		md.current = nil
		for _, o := range md.versions {
			if md.current == nil || o.LoadedAt.After(md.current.LoadedAt) {
				md.current = o
			}
		}
	}
	if len(md.versions) == 0 {
		delete(r.models, name)
	}
	r.startDrainLocked(v)
	r.mu.Unlock()
	return r.finishDrains(ctx, []*Version{v})
}

// startDrainLocked marks v draining; r.mu must be held and v already out of
// the map, so no new Acquire can reach it.
func (r *Registry) startDrainLocked(v *Version) {
	v.mu.Lock()
	v.draining = true
	if v.inflight == 0 {
		close(v.drained)
	}
	v.mu.Unlock()
}

// finishDrains waits for each version's in-flight requests, then closes its
// queue and runner. If ctx ends first, the rest is finished in the
// background and ctx's error returned.
func (r *Registry) finishDrains(ctx context.Context, vs []*Version) error {
	var errs []error
	for i, v := range vs {
		select {
		case <-v.drained:
		case <-ctx.Done():
			go r.closeWhenDrained(vs[i:])
			return fmt.Errorf("unload model %q version %q: %w (it closes when its requests finish)", v.Model, v.Version, ctx.Err())
		}
		errs = append(errs, r.closeVersion(v))
	}
	return errors.Join(errs...)
}

func (r *Registry) closeWhenDrained(vs []*Version) {
	for _, v := range vs {
		<-v.drained
		if err := r.closeVersion(v); err != nil {
			r.log.Error("close model version", "model", v.Model, "version", v.Version, "err", err)
		}
	}
}

func (r *Registry) closeVersion(v *Version) error {
	v.b.close()
	r.retire(v)
	err := v.runner.Close()
	r.log.Info("model unloaded", "model", v.Model, "version", v.Version)
	if err != nil {
		return fmt.Errorf("unload model %q version %q: %w", v.Model, v.Version, err)
	}
	return nil
}

// Acquire returns the version (the current one for version ""), counted as
// in flight until Release. Errors wrap ErrModelNotFound.
func (r *Registry) Acquire(name, version string) (*Version, error) {
	r.mu.RLock()
	v, ok := r.lookupLocked(name, version)
	if ok {
		v.mu.Lock()
		v.inflight++
		v.mu.Unlock()
	}
	r.mu.RUnlock()
	if !ok {
		if version == "" {
			return nil, fmt.Errorf("model %q: %w", name, ErrModelNotFound)
		}
		return nil, fmt.Errorf("model %q version %q: %w", name, version, ErrModelNotFound)
	}
	return v, nil
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Name     string
	Current  string   // the version unversioned requests go to
	Versions []string // sorted, numerically where they are numbers
	Sig      Signature
}

// Models lists the loaded models sorted by name.
func (r *Registry) Models() []ModelInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]ModelInfo, 0, len(r.models))
	for name, md := range r.models {
		out = append(out, modelInfo(name, md))
	}
	slices.SortFunc(out, func(a, b ModelInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Model describes one loaded model.
func (r *Registry) Model(name string) (ModelInfo, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	md := r.models[name]
	if md == nil {
		return ModelInfo{}, fmt.Errorf("model %q: %w", name, ErrModelNotFound)
	}
	return modelInfo(name, md), nil
}

func modelInfo(name string, md *model) ModelInfo {
	info := ModelInfo{Name: name, Current: md.current.Version, Sig: md.current.sig}
	for v := range md.versions {
		info.Versions = append(info.Versions, v)
	}
	slices.SortFunc(info.Versions, compareVersions)
	return info
}

func compareVersions(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return cmp.Compare(a, b)
}

// Close unloads every version, waiting for in-flight requests until ctx
// ends. Later Loads fail with ErrUnavailable.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	var all []*Version
	for name, md := range r.models {
		for _, v := range md.versions {
			all = append(all, v)
			r.startDrainLocked(v)
		}
		delete(r.models, name)
	}
	r.mu.Unlock()
	return r.finishDrains(ctx, all)
}

// writeMetrics writes the per-version series in Prometheus text format.
func (r *Registry) writeMetrics(w io.Writer) {
	r.mu.RLock()
	var vs []*Version
	for _, md := range r.models {
		for _, v := range md.versions {
			vs = append(vs, v)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(vs, func(a, b *Version) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), compareVersions(a.Version, b.Version))
	})
	labels := make([]string, len(vs))
	for i, v := range vs {
		labels[i] = fmt.Sprintf(`model="%s",version="%s"`, labelValue(v.Model), labelValue(v.Version))
	}
	fmt.Fprintf(w, "# HELP %s Models versions loaded and ready.\n# TYPE %s gauge\n%s %d\n", metricModelsLoaded, metricModelsLoaded, metricModelsLoaded, len(vs))
	fmt.Fprintf(w, "# HELP %s Inference requests by model, version and outcome.\n# TYPE %s counter\n", metricRequests, metricRequests)
	for i, v := range vs {
		for o := range numOutcomes {
			fmt.Fprintf(w, "%s{%s,outcome=\"%s\"} %d\n", metricRequests, labels[i], outcomeNames[o], v.metrics.requests[o].Load())
		}
	}
	for _, h := range []struct {
		name, help string
		get        func(*versionMetrics) *histogram
	}{
		{metricRequestSecs, "Time from decoded request to response, by model and version.", func(m *versionMetrics) *histogram { return m.request }},
		{metricQueueSeconds, "Time requests wait in the queue before their run starts.", func(m *versionMetrics) *histogram { return m.queue }},
		{metricCompute, "Time of one backend run (one batch).", func(m *versionMetrics) *histogram { return m.compute }},
		{metricBatchSize, "Requests merged into one backend run.", func(m *versionMetrics) *histogram { return m.batch }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
		for i, v := range vs {
			h.get(v.metrics).write(w, h.name, labels[i])
		}
	}
}
