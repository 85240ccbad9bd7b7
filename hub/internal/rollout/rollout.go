package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Pusher delivers desired states to agents; *fleet.Fleet satisfies it.
type Pusher interface {
	// SetDesired makes d the agent's desired state and publishes it.
	SetDesired(ctx context.Context, agent string, d *agentv1.DesiredState) error
	// RemoveAgent forgets an agent's desired state (it was revoked).
	RemoveAgent(ctx context.Context, agent string) error
	// ModelRef builds the ModelRef of a blob.
	ModelRef(ctx context.Context, name string, version uint32, sha string) (*agentv1.ModelRef, error)
}

// Store is what the rollout reads and writes of the hub's store.
type Store interface {
	ListAgents(ctx context.Context) ([]hub.Agent, error)
	ListDeployments(ctx context.Context, ws string) ([]hub.Deployment, error)
	DesiredRecords(ctx context.Context) (map[string]hub.DesiredRecord, error)
	// AdvanceDesired assigns generations inside its write transaction
	// (hub.DeploymentStore).
	AdvanceDesired(ctx context.Context, digests map[string]string) (map[string]hub.DesiredRecord, error)
}

// Observer receives what agents report; fleet.Observer has the same
// methods.
type Observer interface {
	Reported(ctx context.Context, agentID string, r *agentv1.ReportedState)
	Presence(ctx context.Context, agentID string, p *agentv1.Presence)
}

// Config configures a Rollout. Zero values take the defaults shown.
type Config struct {
	// RetryInterval is how long after a failed sync the next one runs
	// (default 5s).
	RetryInterval time.Duration
	// ResyncInterval is how often Run syncs without being notified, to
	// catch changes nobody announced, such as deployments removed with a
	// forced workspace delete (default 1m).
	ResyncInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Rollout computes and pushes agents' desired states. Its methods are safe
// for concurrent use; syncs are serialized.
type Rollout struct {
	cfg   Config
	store Store
	log   *slog.Logger
	kick  chan struct{}

	syncMu sync.Mutex        // one Sync at a time
	pushed map[string]uint64 // agent → generation last pushed (under syncMu)

	mu      sync.Mutex
	reports map[string]*agentv1.ReportedState // agent → latest report
	known   map[string]bool                   // agents pushed to (for Presence)
}

// New returns a Rollout over store. The Pusher is given to Run (or Sync),
// so the Rollout can be the fleet's Observer before the fleet exists.
func New(cfg Config, store Store, log *slog.Logger) *Rollout {
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Rollout{cfg: cfg, store: store, log: log, kick: make(chan struct{}, 1),
		pushed: map[string]uint64{}, reports: map[string]*agentv1.ReportedState{}, known: map[string]bool{}}
}

// Notify asks for a sync soon; it never blocks, and notifications made
// before a sync starts are served by that one sync.
func (r *Rollout) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run syncs through push at once, then on every Notify and every
// Config.ResyncInterval, retrying a failed sync after
// Config.RetryInterval, until ctx ends; it returns nil.
func (r *Rollout) Run(ctx context.Context, push Pusher) error {
	var retry <-chan time.Time
	resync := time.NewTicker(r.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		if err := r.Sync(ctx, push); err != nil && ctx.Err() == nil {
			r.log.Error("rollout: sync failed; retrying", "in", r.cfg.RetryInterval, "error", err)
			retry = time.After(r.cfg.RetryInterval)
		} else {
			retry = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-retry:
		case <-resync.C:
		}
	}
}

// desired is one agent's computed state.
type desired struct {
	deployments []*agentv1.DeploymentSpec
	digest      string
}

// Sync computes every agent's desired state, records a new generation for
// each whose content changed, and pushes each state not pushed yet by this
// Rollout. An agent whose state cannot be computed (a model blob missing)
// keeps its previous state; the errors are joined in the result and the
// other agents are still served. Every call (and Run) must be given the
// same Pusher: the Rollout remembers what it pushed.
func (r *Rollout) Sync(ctx context.Context, push Pusher) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	agents, err := r.store.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	deps, err := r.store.ListDeployments(ctx, "")
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	recs, err := r.store.DesiredRecords(ctx)
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	refs := map[string]*agentv1.ModelRef{} // "model:version" → ref, per sync
	var errs []error
	live := map[string]bool{}
	type next struct {
		id   string
		want desired
	}
	var states []next
	changed := map[string]string{} // agent → digest of a state that differs from the read record
	for _, a := range agents {
		if a.State == hub.AgentRevoked {
			continue
		}
		live[a.ID] = true
		want, err := r.compute(ctx, push, a, deps, refs)
		if err != nil {
			errs = append(errs, fmt.Errorf("agent %s: %w", a.ID, err))
			continue
		}
		if rec := recs[a.ID]; rec.Digest != want.digest || rec.Generation == 0 {
			changed[a.ID] = want.digest
		}
		states = append(states, next{a.ID, want})
	}
	// New generations are durable before anything is pushed, in one
	// transaction. The records read above only tell which states changed:
	// the store assigns the generations from what it holds inside its
	// transaction (another writer, such as a draining hub's last sync over
	// the same database, may have recorded some since), so a generation is
	// never computed from a stale read.
	if len(changed) > 0 {
		adv, err := r.store.AdvanceDesired(ctx, changed)
		if err != nil {
			return fmt.Errorf("rollout: %w", errors.Join(append(errs, err)...))
		}
		maps.Copy(recs, adv)
	}
	for _, st := range states {
		gen := recs[st.id].Generation
		if r.pushed[st.id] == gen {
			continue
		}
		d := &agentv1.DesiredState{Generation: gen, Deployments: st.want.deployments, TimeUnixNano: r.cfg.Now().UnixNano()}
		if err := push.SetDesired(ctx, st.id, d); err != nil {
			errs = append(errs, fmt.Errorf("agent %s: push generation %d: %w", st.id, gen, err))
			continue
		}
		r.pushed[st.id] = gen
		r.mu.Lock()
		r.known[st.id] = true
		r.mu.Unlock()
		r.log.Info("rollout: desired state pushed", "agent", st.id, "generation", gen, "deployments", len(st.want.deployments))
	}
	for id := range r.pushed {
		if live[id] {
			continue
		}
		if err := push.RemoveAgent(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("agent %s: remove: %w", id, err))
			continue
		}
		delete(r.pushed, id)
		r.mu.Lock()
		delete(r.known, id)
		delete(r.reports, id)
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

// compute builds the deployments of agent a and the digest of their
// encoding.
func (r *Rollout) compute(ctx context.Context, push Pusher, a hub.Agent, deps []hub.Deployment, refs map[string]*agentv1.ModelRef) (desired, error) {
	var out []*agentv1.DeploymentSpec
	for _, d := range deps {
		if !d.Reaches(a.ID, a.Labels) {
			continue
		}
		key := d.Workspace + "/" + d.ModelRef()
		ref := refs[key]
		if ref == nil {
			var err error
			if ref, err = push.ModelRef(ctx, d.Model, uint32(d.Version), d.SHA256); err != nil {
				return desired{}, fmt.Errorf("deployment %q (%s): %w", d.Name, d.ModelRef(), err)
			}
			refs[key] = ref
		}
		delay, _ := d.Options.Delay() // validated when stored
		out = append(out, &agentv1.DeploymentSpec{Name: d.Name, Model: ref, Options: &agentv1.RuntimeOptions{
			MaxBatchSize: uint32(d.Options.MaxBatch), MaxQueueDelayUs: uint32(delay / time.Microsecond),
			AllowCpuFallback: d.Options.AllowCPUFallback},
			Guard: guardRules(d.Guard)})
	}
	slices.SortFunc(out, func(x, y *agentv1.DeploymentSpec) int { return strings.Compare(x.GetName(), y.GetName()) })
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&agentv1.DesiredState{Deployments: out})
	if err != nil {
		return desired{}, err
	}
	sum := sha256.Sum256(b)
	return desired{deployments: out, digest: hex.EncodeToString(sum[:])}, nil
}

// Reported implements Observer: it keeps the agent's latest report.
func (r *Rollout) Reported(_ context.Context, agentID string, rs *agentv1.ReportedState) {
	r.mu.Lock()
	r.reports[agentID] = rs
	r.mu.Unlock()
}

// Presence implements Observer: an agent coming online that this Rollout
// has not pushed a state to (enrolled since the last sync) triggers a sync.
func (r *Rollout) Presence(_ context.Context, agentID string, p *agentv1.Presence) {
	if p.GetStatus() != agentv1.Presence_STATUS_ONLINE {
		return
	}
	r.mu.Lock()
	known := r.known[agentID]
	r.mu.Unlock()
	if !known {
		r.Notify()
	}
}

// Targets returns the state of deployment d on every non-revoked agent of
// agents it reaches, by agent id, from each agent's latest report: pending
// until the agent reports the deployment, and also while it reports
// serving a version other than d's (the new one is not up yet). Endpoint is
// the agent's reported endpoint (or the one in agents) +
// /v2/models/{name}.
func (r *Rollout) Targets(d hub.Deployment, agents []hub.Agent) []hub.DeploymentTarget {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Targets(d, agents, r.reports)
}

// Targets computes the targets of d as Rollout.Targets does, from reports
// (agent id → latest report; nil: every target pending).
func Targets(d hub.Deployment, agents []hub.Agent, reports map[string]*agentv1.ReportedState) []hub.DeploymentTarget {
	out := []hub.DeploymentTarget{}
	for _, a := range agents {
		if a.State == hub.AgentRevoked || !d.Reaches(a.ID, a.Labels) {
			continue
		}
		t := hub.DeploymentTarget{Agent: a.ID, State: hub.TargetPending}
		endpoint := a.Endpoint
		if rs := reports[a.ID]; rs != nil {
			if rs.GetEndpoint() != "" {
				endpoint = rs.GetEndpoint()
			}
			for _, st := range rs.GetDeployments() {
				if st.GetName() != d.Name {
					continue
				}
				t.State, t.ModelVersion, t.Error = stateName(st.GetState()), int(st.GetModelVersion()), st.GetError()
				if t.State == hub.TargetServing && t.ModelVersion != d.Version {
					t.State = hub.TargetPending
				}
				if t.State == hub.TargetRolledBack {
					if int(st.GetRolledBackVersion()) == d.Version {
						t.RolledBackVersion = d.Version
					} else {
						// A rollback of a version the deployment no longer names.
						t.State, t.Error = hub.TargetPending, ""
					}
				}
			}
		}
		if endpoint != "" {
			t.Endpoint = strings.TrimRight(endpoint, "/") + "/v2/models/" + d.Name
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y hub.DeploymentTarget) int { return strings.Compare(x.Agent, y.Agent) })
	return out
}

func stateName(s agentv1.DeploymentStatus_State) string {
	switch s {
	case agentv1.DeploymentStatus_STATE_DOWNLOADING:
		return hub.TargetDownloading
	case agentv1.DeploymentStatus_STATE_LOADING:
		return hub.TargetLoading
	case agentv1.DeploymentStatus_STATE_SERVING:
		return hub.TargetServing
	case agentv1.DeploymentStatus_STATE_FAILED:
		return hub.TargetFailed
	case agentv1.DeploymentStatus_STATE_ROLLED_BACK:
		return hub.TargetRolledBack
	}
	return hub.TargetPending
}

// guardRules converts stored rules to the protocol's (nil for none).
func guardRules(g *hub.GuardRules) *agentv1.GuardRules {
	if g == nil || g.RollbackIf == "" {
		return nil
	}
	p, _ := g.ProbationDuration() // validated when stored
	return &agentv1.GuardRules{RollbackIf: g.RollbackIf, ProbationSeconds: uint32(p / time.Second), MinRequests: uint32(g.MinRequests)}
}

// Tee returns an Observer that hands every message to each of obs in
// order.
func Tee(obs ...Observer) Observer { return tee(obs) }

type tee []Observer

func (t tee) Reported(ctx context.Context, id string, r *agentv1.ReportedState) {
	for _, o := range t {
		o.Reported(ctx, id, r)
	}
}

func (t tee) Presence(ctx context.Context, id string, p *agentv1.Presence) {
	for _, o := range t {
		o.Presence(ctx, id, p)
	}
}
