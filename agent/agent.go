package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/modelcache"
	"github.com/atelier-ml/atelier/agent/internal/mqttsession"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Server is the serving side the agent drives (the in-process scoring
// registry on an edge agent). Implementations must be safe for concurrent
// use; the agent calls them from one goroutine at a time.
type Server interface {
	// Load loads the model file at path as spec.Model.Version of the
	// deployment spec.Name, with spec's options, runs a warm-up inference
	// and atomically switches the deployment's traffic to it. On error the
	// version served before (if any) keeps serving.
	Load(ctx context.Context, spec *agentv1.DeploymentSpec, path string) error
	// Unload stops serving deployment and releases its model.
	Unload(ctx context.Context, deployment string) error
}

// Config configures an Agent. Zero values take the defaults shown.
type Config struct {
	// ID is the agent id: [a-z0-9][a-z0-9-]{0,62}; MQTT client id and topic level.
	ID string
	// DataDir holds desired.pb, serving.pb and models/ (see the package doc).
	DataDir string
	// Broker is the hub's MQTT URL, e.g. tcp://hub.example:1883.
	Broker string
	// Username and Password are the agent's broker credential.
	Username, Password string
	// Endpoint is the base URL of the scoring endpoint, reported to the hub.
	Endpoint string
	// Capabilities are announced in the presence.
	Capabilities *agentv1.Capabilities
	// Heartbeat is the interval of ReportedState heartbeats (default 10s).
	Heartbeat time.Duration
	// RetryInterval is how long after a failed reconcile the agent tries
	// again (default 30s). A new desired state or a reconnect retries at once.
	RetryInterval time.Duration
	// KeepModels is how many unused models the cache keeps (default 3;
	// negative keeps none).
	KeepModels int
	// ModelSyncBytes is how much of a model transfer is written between two
	// fsyncs (see modelcache.Config.SyncBytes; 0 takes its 4 MiB default).
	ModelSyncBytes int64
	// ChunkWindow, ChunkTimeout, MinBackoff and MaxBackoff tune the MQTT
	// session (see mqttsession.Config; zero takes its defaults).
	ChunkWindow            int
	ChunkTimeout           time.Duration
	MinBackoff, MaxBackoff time.Duration
	// Stats, if set, gives the scoring totals that telemetry and guard
	// rules are computed from (the edge daemon passes its registry's).
	Stats StatsFunc
	// Devices, if set, gives accelerator figures for telemetry (an FPGA
	// agent passes its fpgahost.Host); otherwise the Server's, if it is a
	// DeviceReporter.
	Devices DeviceReporter
	// TelemetryInterval is how often a telemetry batch is made (default
	// 10s, at least 1s); TelemetryAckTimeout how long an upload waits for
	// the hub's ack before it is sent again (default 15s);
	// TelemetryUploadBytes bounds one upload and one batch (default 512 KiB).
	TelemetryInterval time.Duration
	// TelemetryIdleInterval is how often a batch is sent while nothing
	// happens (no request served, no input seen, no event, no batch
	// dropped): the idle intervals in between are folded into the next
	// batch (default 1 minute, at least TelemetryInterval). See
	// docs/protocol.md, "Telemetry".
	TelemetryIdleInterval time.Duration
	TelemetryAckTimeout   time.Duration
	TelemetryUploadBytes  int
	// SpoolMaxBytes and SpoolMaxAge bound the telemetry spool at
	// DataDir/telemetry (0 takes the spool's defaults, 64 MiB and 24h;
	// beyond them the oldest batches are dropped and counted).
	SpoolMaxBytes int64
	SpoolMaxAge   time.Duration
}

func (c *Config) setDefaults() error {
	if !topics.ValidAgentID(c.ID) {
		return fmt.Errorf("%w: ID %q does not match [a-z0-9][a-z0-9-]{0,62}", ErrInvalidConfig, c.ID)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: DataDir is empty", ErrInvalidConfig)
	}
	if c.Broker == "" {
		return fmt.Errorf("%w: Broker is empty", ErrInvalidConfig)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.Heartbeat < time.Second {
		return fmt.Errorf("%w: Heartbeat %v below 1s", ErrInvalidConfig, c.Heartbeat)
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 30 * time.Second
	}
	return c.telemetryDefaults()
}

// Agent reconciles the deployments a hub wants with what its Server
// serves. Create it with New and call Run once.
type Agent struct {
	cfg   Config
	srv   Server
	log   *slog.Logger
	cache *modelcache.Cache
	sess  *mqttsession.Session

	inMu    sync.Mutex
	pending *agentv1.DesiredState // latest received, not yet taken
	inbox   chan struct{}         // 1-buffered: pending changed
	upCh    chan struct{}         // 1-buffered: session (re)connected

	pubMu sync.Mutex // orders reported-state publications

	evMu          sync.Mutex // guards events and eventsDropped
	events        []*agentv1.AgentEvent
	eventsDropped uint64

	tel *telemetryLoop

	guard *guardState // rollback rules (guard.go)

	mu      sync.Mutex // guards the fields below
	desired *agentv1.DesiredState
	serving map[string]served
	status  map[string]*agentv1.DeploymentStatus
}

// New validates cfg, opens the model cache under DataDir/models and prepares
// the MQTT session. It does not connect or touch the Server.
func New(cfg Config, srv Server, log *slog.Logger) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if srv == nil {
		return nil, fmt.Errorf("%w: nil Server", ErrInvalidConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("agent", cfg.ID)
	cache, err := modelcache.New(modelcache.Config{Dir: filepath.Join(cfg.DataDir, "models"), Keep: cfg.KeepModels, SyncBytes: cfg.ModelSyncBytes}, log)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{cfg: cfg, srv: srv, log: log, cache: cache,
		inbox: make(chan struct{}, 1), upCh: make(chan struct{}, 1),
		serving: map[string]served{}, status: map[string]*agentv1.DeploymentStatus{}, guard: newGuardState()}
	if a.tel, err = newTelemetryLoop(a); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.sess, err = mqttsession.New(mqttsession.Config{
		Broker: cfg.Broker, AgentID: cfg.ID, Username: cfg.Username, Password: cfg.Password,
		Capabilities: cfg.Capabilities, HeartbeatSeconds: uint32(cfg.Heartbeat / time.Second),
		ChunkWindow: cfg.ChunkWindow, ChunkTimeout: cfg.ChunkTimeout,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
	}, mqttsession.Handlers{Desired: a.receive, Connected: a.connected, TelemetryAck: a.tel.ack}, log)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return a, nil
}

func (a *Agent) desiredPath() string { return filepath.Join(a.cfg.DataDir, "desired.pb") }
func (a *Agent) servingPath() string { return filepath.Join(a.cfg.DataDir, "serving.pb") }

// receive runs on the MQTT delivery goroutine: drop invalid states, keep
// the newest valid one, wake Run.
func (a *Agent) receive(d *agentv1.DesiredState) {
	if err := ValidateDesired(d); err != nil {
		a.log.Error("desired state ignored", "generation", d.GetGeneration(), "error", err)
		return
	}
	a.inMu.Lock()
	if a.pending == nil || d.GetGeneration() >= a.pending.GetGeneration() {
		a.pending = d
	}
	a.inMu.Unlock()
	select {
	case a.inbox <- struct{}{}:
	default:
	}
}

func (a *Agent) connected() {
	a.tel.connected()
	select {
	case a.upCh <- struct{}{}:
	default:
	}
}

// Run serves until ctx ends. It first restores the last good deployments
// from disk and the persisted desired state, without waiting for the hub;
// then it keeps the MQTT session up and reconciles every newer desired
// state. It returns nil after ctx ends and the session has said goodbye, or
// an error if the data directory cannot be read.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.restore(ctx); err != nil {
		return err
	}
	if err := a.restoreGuard(); err != nil {
		return err
	}
	guardDone := a.startGuard(ctx)
	sessDone := make(chan struct{})
	go func() {
		defer close(sessDone)
		_ = a.sess.Run(ctx)
	}()
	telDone := a.tel.start(ctx)

	var (
		running context.CancelFunc
		done    = make(chan bool, 1)
		again   bool // restart once the running pass has stopped
		retry   <-chan time.Time
	)
	start := func() {
		a.mu.Lock()
		d := a.desired
		a.mu.Unlock()
		if d == nil {
			return
		}
		rctx, cancel := context.WithCancel(ctx)
		running, retry = cancel, nil
		go func() { done <- a.reconcile(rctx, d) }()
	}
	start()
	hb := time.NewTicker(a.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			if running != nil {
				running()
				<-done
			}
			<-sessDone
			telDone()
			guardDone()
			return nil
		case <-a.inbox:
			a.inMu.Lock()
			d := a.pending
			a.pending = nil
			a.inMu.Unlock()
			if d == nil {
				continue
			}
			switch age, err := a.accept(d); {
			case err != nil:
				a.log.Error("desired state not applied", "generation", d.GetGeneration(), "error", err)
			case age == newer && running != nil:
				running() // superseded: stop it and start over when it has
				again = true
			case running == nil && (age == newer || age == same && a.needsWork()):
				// The same generation comes back retained on every
				// reconnect: a chance to retry what failed.
				start()
			}
		case <-a.upCh:
			a.report(ctx)
			if running == nil && a.needsWork() {
				start()
			}
		case <-hb.C:
			a.heartbeat(ctx)
		case <-retry:
			retry = nil
			if running == nil && a.needsWork() {
				start()
			}
		case failed := <-done:
			running = nil
			switch {
			case again:
				again = false
				start()
			case failed:
				retry = time.After(a.cfg.RetryInterval)
			}
		}
	}
}

// generation age of a received desired state against the applied one.
type age int

const (
	older age = iota
	same
	newer
)

// accept validates d and, if it is newer than the applied state, persists it
// and makes it the applied state. It reports d's age.
func (a *Agent) accept(d *agentv1.DesiredState) (age, error) {
	if err := ValidateDesired(d); err != nil {
		return older, err
	}
	a.mu.Lock()
	cur := a.desired.GetGeneration()
	a.mu.Unlock()
	if d.GetGeneration() < cur {
		a.log.Info("older desired state ignored", "generation", d.GetGeneration(), "applied_generation", cur)
		return older, nil
	}
	if d.GetGeneration() == cur {
		return same, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return older, fmt.Errorf("encode desired state: %w", err)
	}
	if err := writeState(a.desiredPath(), b); err != nil {
		return older, fmt.Errorf("persist desired state: %w", err)
	}
	a.mu.Lock()
	a.desired = d
	a.mu.Unlock()
	a.log.Info("desired state accepted", "generation", d.GetGeneration(), "deployments", len(d.GetDeployments()))
	return newer, nil
}

// restore loads the persisted desired state, then reloads what was
// serving before the restart from the cache. Nothing here talks to the hub.
func (a *Agent) restore(ctx context.Context) error {
	b, err := readState(a.desiredPath())
	if err != nil {
		return fmt.Errorf("agent: read desired state: %w", err)
	}
	if b != nil {
		d, err := decodeDesired(b)
		if err != nil {
			a.log.Error("persisted desired state unreadable, waiting for the hub", "path", a.desiredPath(), "error", err)
		} else {
			a.mu.Lock()
			a.desired = d
			a.mu.Unlock()
			a.log.Info("persisted desired state loaded", "generation", d.GetGeneration())
		}
	}
	b, err = readState(a.servingPath())
	if err != nil {
		return fmt.Errorf("agent: read serving record: %w", err)
	}
	if b == nil {
		return nil
	}
	last, err := decodeServing(b)
	if err != nil {
		a.log.Error("serving record unreadable, starting with nothing served", "path", a.servingPath(), "error", err)
	}
	for _, name := range sortedKeys(last) {
		s := last[name]
		st := &agentv1.DeploymentStatus{Name: name}
		path, err := a.cache.Get(s.sha)
		if err == nil {
			err = a.srv.Load(ctx, a.specFor(name, s), path)
		}
		a.mu.Lock()
		if err != nil {
			a.log.Error("restore deployment", "deployment", name, "version", s.version, "error", err)
			st.State, st.Error = agentv1.DeploymentStatus_STATE_FAILED, "restore: "+err.Error()
		} else {
			a.log.Info("deployment restored from cache", "deployment", name, "version", s.version, "sha256", s.sha)
			st.State, st.ModelVersion, st.ModelSha256 = agentv1.DeploymentStatus_STATE_SERVING, s.version, s.sha
			a.serving[name] = s
		}
		a.status[name] = st
		a.mu.Unlock()
	}
	return a.saveServing()
}

func (a *Agent) saveServing() error {
	a.mu.Lock()
	b := encodeServing(a.serving)
	a.mu.Unlock()
	if err := writeState(a.servingPath(), b); err != nil {
		return fmt.Errorf("agent: persist serving record: %w", err)
	}
	return nil
}

// needsWork reports whether the applied desired state is not fully served.
func (a *Agent) needsWork() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.desired == nil {
		return false
	}
	want := map[string]bool{}
	for _, d := range a.desired.GetDeployments() {
		want[d.GetName()] = true
		s, ok := a.serving[d.GetName()]
		if !ok || s.sha != d.GetModel().GetSha256() || s.version != d.GetModel().GetVersion() {
			if a.guard.isRolledBack(d.GetName(), d.GetModel().GetSha256()) {
				continue
			}
			return true
		}
	}
	for name := range a.serving {
		if !want[name] {
			return true
		}
	}
	return false
}

// setStatus updates one deployment's status with f and publishes a report.
func (a *Agent) setStatus(ctx context.Context, name string, f func(st *agentv1.DeploymentStatus)) {
	a.mu.Lock()
	st := a.status[name]
	if st == nil {
		st = &agentv1.DeploymentStatus{Name: name}
		a.status[name] = st
	}
	f(st)
	if s, ok := a.serving[name]; ok {
		st.ModelVersion, st.ModelSha256 = s.version, s.sha
	} else {
		st.ModelVersion, st.ModelSha256 = 0, ""
	}
	a.mu.Unlock()
	a.report(ctx)
}

// reconcile drives every deployment of d to its desired version and
// removes the others. It reports whether anything failed. A cancelled ctx
// (superseded or shutting down) stops it between or inside steps without
// marking anything failed.
func (a *Agent) reconcile(ctx context.Context, d *agentv1.DesiredState) (failed bool) {
	a.mu.Lock()
	want := map[string]bool{}
	for _, dep := range d.GetDeployments() {
		want[dep.GetName()] = true
		if a.status[dep.GetName()] == nil {
			a.status[dep.GetName()] = &agentv1.DeploymentStatus{Name: dep.GetName(), State: agentv1.DeploymentStatus_STATE_PENDING}
		}
	}
	for name := range a.status {
		if _, ok := a.serving[name]; !ok && !want[name] {
			delete(a.status, name)
		}
	}
	a.mu.Unlock()
	a.report(ctx)

	for _, dep := range d.GetDeployments() {
		if ctx.Err() != nil {
			return false
		}
		if err := a.deploy(ctx, dep); err != nil {
			if ctx.Err() != nil {
				return false
			}
			failed = true
			a.log.Error("deployment failed; previous version keeps serving", "deployment", dep.GetName(),
				"version", dep.GetModel().GetVersion(), "error", err)
			a.setStatus(ctx, dep.GetName(), func(st *agentv1.DeploymentStatus) {
				st.State, st.Error, st.Downloaded = agentv1.DeploymentStatus_STATE_FAILED, err.Error(), 0
			})
		}
	}
	a.mu.Lock()
	var gone []string
	for name := range a.serving {
		if !want[name] {
			gone = append(gone, name)
		}
	}
	a.mu.Unlock()
	slices.Sort(gone)
	for _, name := range gone {
		a.guard.srvMu.Lock()
		a.guardForget(name)
		err := a.srv.Unload(ctx, name)
		a.guard.srvMu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			failed = true
			a.log.Error("unload deployment", "deployment", name, "error", err)
			a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
				st.State, st.Error = agentv1.DeploymentStatus_STATE_FAILED, "unload: "+err.Error()
			})
			continue
		}
		a.mu.Lock()
		delete(a.serving, name)
		delete(a.status, name)
		a.mu.Unlock()
		a.log.Info("deployment removed", "deployment", name)
		if err := a.saveServing(); err != nil {
			a.log.Error("persist serving record", "error", err)
		}
		a.report(ctx)
	}
	a.gc(d)
	return failed
}

// deploy brings one deployment to its desired version: download → verify
// (in the cache) → load, warm up and switch (in the Server) → report.
func (a *Agent) deploy(ctx context.Context, dep *agentv1.DeploymentSpec) error {
	name, ref := dep.GetName(), dep.GetModel()
	if a.guardSkip(ctx, dep) {
		return nil
	}
	a.mu.Lock()
	cur, ok := a.serving[name]
	a.mu.Unlock()
	if ok && cur.sha == ref.GetSha256() && cur.version == ref.GetVersion() {
		a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
			st.State, st.Error, st.Downloaded = agentv1.DeploymentStatus_STATE_SERVING, "", 0
		})
		return nil
	}
	a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
		st.State, st.Downloaded = agentv1.DeploymentStatus_STATE_DOWNLOADING, 0
	})
	path, err := a.cache.Fetch(ctx, ref, a.sess, func(n uint64) {
		a.mu.Lock()
		if st := a.status[name]; st != nil {
			st.Downloaded = n
		}
		a.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("download %s version %d: %w", ref.GetName(), ref.GetVersion(), err)
	}
	a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) { st.State = agentv1.DeploymentStatus_STATE_LOADING })
	a.guard.srvMu.Lock()
	defer a.guard.srvMu.Unlock()
	a.mu.Lock()
	prev, hadPrev := a.serving[name]
	a.mu.Unlock()
	if err := a.srv.Load(ctx, dep, path); err != nil {
		return fmt.Errorf("load %s version %d: %w", ref.GetName(), ref.GetVersion(), err)
	}
	a.mu.Lock()
	a.serving[name] = served{version: ref.GetVersion(), sha: ref.GetSha256()}
	a.mu.Unlock()
	a.guardLoaded(dep, prev, hadPrev)
	if err := a.saveServing(); err != nil {
		// Serving is right; only the restart record is stale.
		a.log.Error("persist serving record", "error", err)
	}
	a.log.Info("deployment serving", "deployment", name, "version", ref.GetVersion(), "sha256", ref.GetSha256())
	a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
		st.State, st.Error, st.Downloaded = agentv1.DeploymentStatus_STATE_SERVING, "", 0
	})
	return nil
}

// specFor returns the spec to restore deployment name at what s records:
// the applied desired state's spec if it names the same model, otherwise
// one with the model alone (default options).
func (a *Agent) specFor(name string, s served) *agentv1.DeploymentSpec {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range a.desired.GetDeployments() {
		if d.GetName() == name && d.GetModel().GetSha256() == s.sha && d.GetModel().GetVersion() == s.version {
			return d
		}
	}
	return &agentv1.DeploymentSpec{Name: name, Model: &agentv1.ModelRef{Version: s.version, Sha256: s.sha}}
}

func (a *Agent) gc(d *agentv1.DesiredState) {
	a.mu.Lock()
	var inUse []string
	for _, s := range a.serving {
		inUse = append(inUse, s.sha)
	}
	a.mu.Unlock()
	for _, dep := range d.GetDeployments() {
		inUse = append(inUse, dep.GetModel().GetSha256())
	}
	inUse = append(inUse, a.guardGC(d)...) // versions on probation roll back to
	if _, err := a.cache.GC(inUse); err != nil {
		a.log.Warn("model cache gc", "error", err)
	}
}

// Status returns a snapshot of what the agent would report now. Safe for
// concurrent use.
func (a *Agent) Status() *agentv1.ReportedState {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := &agentv1.ReportedState{
		ObservedGeneration: a.desired.GetGeneration(),
		TimeUnixNano:       time.Now().UnixNano(),
		Endpoint:           a.cfg.Endpoint,
	}
	for _, name := range sortedKeys(a.status) {
		r.Deployments = append(r.Deployments, proto.Clone(a.status[name]).(*agentv1.DeploymentStatus))
	}
	return r
}

// report publishes the current status; while disconnected it does nothing
// (the next connect and every heartbeat publish the full state anyway).
func (a *Agent) report(ctx context.Context) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	if !a.sess.Connected() {
		return
	}
	if err := a.sess.PublishReported(ctx, a.Status()); err != nil && ctx.Err() == nil &&
		!errors.Is(err, mqttsession.ErrNotConnected) {
		a.log.Warn("publish reported state", "error", err)
	}
}

// heartbeat republishes the current status at QoS 0 (see
// mqttsession.Session.PublishHeartbeat).
func (a *Agent) heartbeat(ctx context.Context) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	if !a.sess.Connected() {
		return
	}
	if err := a.sess.PublishHeartbeat(ctx, a.Status()); err != nil && ctx.Err() == nil &&
		!errors.Is(err, mqttsession.ErrNotConnected) {
		a.log.Warn("publish heartbeat", "error", err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[string])
}
