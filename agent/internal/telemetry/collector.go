package telemetry

import (
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// Defaults of Config and MonitorOptions.
const (
	DefaultMaxFeatures  = 256
	DefaultCaptureBytes = 256 << 10
)

// DeviceStats are an accelerator's running totals for one deployment (the
// agent converts agent.DeviceStats to these).
type DeviceStats struct {
	Backend           string
	Faults, Fallbacks uint64
}

// Config configures a Collector. Every func may be nil (that part is then
// not measured); they are called from Collect only.
type Config struct {
	// Stats returns the scoring totals of every loaded and recently
	// unloaded version (scoring.Registry.Stats).
	Stats func() []scoring.VersionStats
	// Devices returns accelerator totals per deployment.
	Devices func() map[string]DeviceStats
	// Digest returns the sha256 of the file serving version of deployment,
	// or "" if unknown; used when Wrap did not see that version's spec.
	Digest func(deployment string, version uint32) string
	// DataDir is the directory whose file system is reported (statfs).
	DataDir string
	// CacheDir is the model cache directory whose size is reported.
	CacheDir string
	// CaptureBytes bounds the captured payload bytes per batch, over all
	// deployments (default 256 KiB; negative disables capture).
	CaptureBytes int
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// Collector measures an agent's telemetry. Wrap and the runners it
// returns are safe for concurrent use; Collect must be called by one
// goroutine at a time.
type Collector struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	mu       sync.Mutex // guards obs, retired, wrapped and digests
	obs      map[key]*observer
	retired  []retiredObs      // replaced observers, collected once more
	wrapped  map[key]string    // digest of the last spec wrapped per (deployment, version)
	digests  map[uint64]string // digest per scoring stats ID, once known
	captured atomic.Int64      // captured bytes in the current interval
	skipped  atomic.Uint64     // samples not captured for the budget, ever

	// Collect's state (one goroutine).
	last    time.Time
	prev    map[uint64]scoring.VersionStats
	devPrev map[string]DeviceStats
	host    hostSampler
}

type retiredObs struct {
	k key
	o *observer
}

type key struct {
	deployment string
	version    uint32
}

// New returns a Collector; the first Collect measures from now.
func New(cfg Config, log *slog.Logger) (*Collector, error) {
	if cfg.CaptureBytes == 0 {
		cfg.CaptureBytes = DefaultCaptureBytes
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Collector{cfg: cfg, log: log, obs: map[key]*observer{}, wrapped: map[key]string{},
		prev: map[uint64]scoring.VersionStats{}, digests: map[uint64]string{}, devPrev: map[string]DeviceStats{}}
	c.started = cfg.Clock()
	c.last = c.started
	c.host.log = log
	c.host.sample() // baseline for the first interval's deltas
	if cfg.Stats != nil {
		// Requests before the collector existed belong to no interval.
		for _, s := range cfg.Stats() {
			c.prev[s.ID] = s
		}
	}
	return c, nil
}

// CaptureSkipped is the number of samples that were drawn for capture but
// not captured because the batch's byte budget was spent.
func (c *Collector) CaptureSkipped() uint64 { return c.skipped.Load() }

// ParseVersion maps a registry version name to the deployment's model
// version: "N" and "N-reload" are N.
func ParseVersion(v string) (uint32, error) {
	v, _ = strings.CutSuffix(v, "-reload")
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("version %q: expected a number, optionally with suffix -reload", v)
	}
	return uint32(n), nil
}

// Collect returns the measurements since the previous call (or New):
// start and end, the deployments that answered requests or saw inputs, and
// the agent's figures. Seq, DroppedBatches, Events and
// Agent.SpoolPendingBatches are the caller's to set.
func (c *Collector) Collect() *agentv1.TelemetryBatch {
	now := c.cfg.Clock()
	b := &agentv1.TelemetryBatch{StartUnixNano: c.last.UnixNano(), EndUnixNano: now.UnixNano()}
	wall := now.Sub(c.last)
	c.last = now
	b.Deployments = c.deployments()
	b.Agent = c.host.agent(wall, c.cfg.DataDir, c.cfg.CacheDir)
	b.Agent.UptimeSeconds = uint64(now.Sub(c.started) / time.Second)
	return b
}

func (c *Collector) digest(id uint64, k key) string {
	c.mu.Lock()
	d, ok := c.digests[id]
	if !ok {
		d = c.wrapped[k]
	}
	c.mu.Unlock()
	if ok {
		return d
	}
	if d == "" && c.cfg.Digest != nil {
		d = c.cfg.Digest(k.deployment, k.version)
	}
	if d != "" {
		c.mu.Lock()
		c.digests[id] = d
		c.mu.Unlock()
	}
	return d
}

// pinDigestsLocked gives every load of k the registry has now the digest
// wrapped for k so far, before a new spec for k (a reload of the same
// version number) replaces it.
func (c *Collector) pinDigestsLocked(k key) {
	old := c.wrapped[k]
	if old == "" || c.cfg.Stats == nil {
		return
	}
	for _, s := range c.cfg.Stats() {
		if _, ok := c.digests[s.ID]; ok || s.Model != k.deployment {
			continue
		}
		if v, err := ParseVersion(s.Version); err == nil && v == k.version {
			c.digests[s.ID] = old
		}
	}
}

func (c *Collector) deployments() []*agentv1.DeploymentTelemetry {
	var out []*agentv1.DeploymentTelemetry
	latest := map[key]*agentv1.DeploymentTelemetry{} // newest entry per (deployment, version)
	newest := map[string]*agentv1.DeploymentTelemetry{}
	if c.cfg.Stats != nil {
		cur := c.cfg.Stats()
		seen := make(map[uint64]bool, len(cur))
		for _, s := range cur { // ordered by ID
			seen[s.ID] = true
			p := c.prev[s.ID]
			c.prev[s.ID] = s
			v, err := ParseVersion(s.Version)
			if err != nil {
				c.log.Warn("telemetry: version not numeric, reported as 0", "deployment", s.Model, "error", err)
			}
			k := key{s.Model, v}
			d := &agentv1.DeploymentTelemetry{Name: s.Model, ModelVersion: v, ModelSha256: c.digest(s.ID, k)}
			var n uint64
			for o, total := range s.Requests {
				if x := total - p.Requests[o]; x > 0 {
					if d.Requests == nil {
						d.Requests = map[string]uint64{}
					}
					d.Requests[o] = x
					n += x
				}
			}
			q, cp, r, bt := s.Queue.Sub(p.Queue), s.Compute.Sub(p.Compute), s.Request.Sub(p.Request), s.Batch.Sub(p.Batch)
			if n == 0 && q.Count() == 0 && cp.Count() == 0 && r.Count() == 0 && bt.Count() == 0 {
				continue
			}
			d.QueueSeconds, d.ComputeSeconds, d.RequestSeconds, d.BatchSize = hist(q), hist(cp), hist(r), hist(bt)
			if e := latest[k]; e != nil {
				// Another load of the same version (a reload of version N
				// goes through "N-reload"): one entry per version, with the
				// newer load's digest.
				mergeEntry(e, d)
				continue
			}
			out = append(out, d)
			latest[k] = d
			newest[s.Model] = d
		}
		for id := range c.prev {
			if !seen[id] {
				delete(c.prev, id)
				c.mu.Lock()
				delete(c.digests, id)
				c.mu.Unlock()
			}
		}
	}
	// Input summaries and captures, by (deployment, version).
	c.mu.Lock()
	obs := c.retired
	c.retired = nil
	for k, o := range c.obs {
		obs = append(obs, retiredObs{k, o})
	}
	c.mu.Unlock()
	slices.SortStableFunc(obs, func(a, b retiredObs) int { return cmpKey(a.k, b.k) })
	c.captured.Store(0)
	for _, ko := range obs {
		k := ko.k
		feats, caps := ko.o.take()
		c.mu.Lock()
		if ko.o.refs.Load() == 0 && c.obs[k] == ko.o {
			delete(c.obs, k) // every runner closed: nothing more to observe
		}
		c.mu.Unlock()
		if len(feats) == 0 && len(caps) == 0 {
			continue
		}
		d := latest[k]
		if d == nil {
			d = &agentv1.DeploymentTelemetry{Name: k.deployment, ModelVersion: k.version}
			c.mu.Lock()
			d.ModelSha256 = c.wrapped[k]
			c.mu.Unlock()
			out = append(out, d)
			latest[k] = d
			if newest[k.deployment] == nil {
				newest[k.deployment] = d
			}
		}
		d.Features = append(d.Features, feats...)
		d.Captured = append(d.Captured, caps...)
	}
	// Accelerator figures go to the deployment's newest entry.
	if c.cfg.Devices != nil {
		devs := c.cfg.Devices()
		for _, name := range slices.Sorted(maps.Keys(devs)) {
			t, p := devs[name], c.devPrev[name]
			c.devPrev[name] = t
			df, dfb := delta(t.Faults, p.Faults), delta(t.Fallbacks, p.Fallbacks)
			d := newest[name]
			if d == nil {
				if df == 0 && dfb == 0 {
					continue
				}
				d = &agentv1.DeploymentTelemetry{Name: name}
				out = append(out, d)
				newest[name] = d
			}
			d.Backend, d.DeviceFaults, d.CpuFallbacks = t.Backend, df, dfb
		}
		for name := range c.devPrev {
			if _, ok := devs[name]; !ok {
				delete(c.devPrev, name)
			}
		}
	}
	return out
}

// mergeEntry adds d's requests and histograms to e; e takes d's digest
// (d is the newer load) if it has one.
func mergeEntry(e, d *agentv1.DeploymentTelemetry) {
	if d.ModelSha256 != "" {
		e.ModelSha256 = d.ModelSha256
	}
	for o, n := range d.Requests {
		if e.Requests == nil {
			e.Requests = map[string]uint64{}
		}
		e.Requests[o] += n
	}
	e.QueueSeconds = addHist(e.QueueSeconds, d.QueueSeconds)
	e.ComputeSeconds = addHist(e.ComputeSeconds, d.ComputeSeconds)
	e.RequestSeconds = addHist(e.RequestSeconds, d.RequestSeconds)
	e.BatchSize = addHist(e.BatchSize, d.BatchSize)
}

// addHist returns a+b. Histograms of one registry share their bounds; if
// they differ, b's observations are counted in the bucket of a holding the
// upper bound of b's bucket (the overflow bucket stays the overflow).
func addHist(a, b *agentv1.Histogram) *agentv1.Histogram {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	a.Sum += b.Sum
	for i, c := range b.Counts {
		j := len(a.Bounds)
		if i < len(b.Bounds) {
			j, _ = slices.BinarySearch(a.Bounds, b.Bounds[i])
		}
		a.Counts[j] += c
	}
	return a
}

// delta is cur-prev, or cur if the total went back (a reset).
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func hist(h scoring.HistogramStats) *agentv1.Histogram {
	if h.Count() == 0 {
		return nil
	}
	return &agentv1.Histogram{Bounds: slices.Clone(h.Bounds), Counts: h.Counts, Sum: h.Sum}
}

func cmpKey(a, b key) int {
	if c := strings.Compare(a.deployment, b.deployment); c != 0 {
		return c
	}
	return int(a.version) - int(b.version)
}

func shards() int { return max(1, runtime.GOMAXPROCS(0)) }
