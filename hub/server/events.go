package server

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/rollout"
	"github.com/atelier-ml/atelier/hub/internal/webhook"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Events: the hub's own event sources (agent presence in agents.go,
// deployment states here), the event log's retention and the webhook.
// Agents' own events (rollback, device faults) arrive with telemetry and
// are recorded by the store's ingestion.

// eventRecorder writes events to the log. Events are a record, not a
// gate: a failed write is logged and dropped, never retried, and never
// holds up the protocol.
type eventRecorder struct {
	st  hub.EventStore
	log *slog.Logger
}

func (r eventRecorder) record(ctx context.Context, e hub.Event) {
	e, err := r.st.AddEvent(ctx, e)
	if err != nil {
		if ctx.Err() != nil {
			r.log.Debug("record event: hub shutting down", "kind", e.Kind, "agent", e.Agent, "error", err)
			return
		}
		r.log.Error("record event", "kind", e.Kind, "agent", e.Agent, "deployment", e.Deployment, "error", err)
		return
	}
	r.log.Info("event", "id", e.ID, "kind", e.Kind, "agent", e.Agent, "deployment", e.Deployment, "message", e.Message)
}

// deploymentEvents is a fleet observer that records deployment_failed and
// deployment_rolled_back when a target's reported state becomes failed or
// rolled_back. It keeps each (agent, deployment)'s last reported state in
// memory; after a hub restart the first report of a failed or rolled-back
// target is compared with the last such event in the log (same error and
// versions: not recorded again), so a restart does not repeat events. It
// is safe for concurrent use.
type deploymentEvents struct {
	st hub.EventStore
	ev eventRecorder

	mu   sync.Mutex
	last map[string]map[string]agentv1.DeploymentStatus_State // agent → deployment → state
}

var _ rollout.Observer = (*deploymentEvents)(nil)

func newDeploymentEvents(st hub.EventStore, log *slog.Logger) *deploymentEvents {
	return &deploymentEvents{st: st, ev: eventRecorder{st: st, log: log}, last: map[string]map[string]agentv1.DeploymentStatus_State{}}
}

// Presence implements rollout.Observer; presence is recorded elsewhere.
func (d *deploymentEvents) Presence(context.Context, string, *agentv1.Presence) {}

// Reported implements rollout.Observer.
func (d *deploymentEvents) Reported(ctx context.Context, id string, r *agentv1.ReportedState) {
	type change struct {
		ds    *agentv1.DeploymentStatus
		known bool // a previous state was known
	}
	var changes []change
	d.mu.Lock()
	prev := d.last[id]
	next := make(map[string]agentv1.DeploymentStatus_State, len(r.GetDeployments()))
	for _, ds := range r.GetDeployments() {
		st := ds.GetState()
		next[ds.GetName()] = st
		old, known := prev[ds.GetName()]
		if (st == agentv1.DeploymentStatus_STATE_FAILED || st == agentv1.DeploymentStatus_STATE_ROLLED_BACK) && (!known || old != st) {
			changes = append(changes, change{ds: ds, known: known})
		}
	}
	d.last[id] = next // deployments no longer reported are forgotten
	d.mu.Unlock()
	at := time.Now()
	if t := r.GetTimeUnixNano(); t > 0 {
		at = time.Unix(0, t)
	}
	for _, c := range changes {
		e := deploymentEvent(id, c.ds, at)
		if !c.known && d.recorded(ctx, e) {
			continue
		}
		d.ev.record(ctx, e)
	}
}

// deploymentEvent describes ds (failed or rolled back) on agent id.
func deploymentEvent(id string, ds *agentv1.DeploymentStatus, at time.Time) hub.Event {
	attrs := map[string]string{}
	if v := ds.GetModelVersion(); v > 0 {
		attrs["model_version"] = strconv.FormatUint(uint64(v), 10)
	}
	if s := ds.GetModelSha256(); s != "" {
		attrs["model_sha256"] = s
	}
	if s := ds.GetError(); s != "" {
		attrs["error"] = s
	}
	if b := ds.GetBackend(); b != "" {
		attrs["backend"] = b
	}
	e := hub.Event{Time: at, Agent: id, Deployment: ds.GetName(), Attrs: attrs}
	if ds.GetState() == agentv1.DeploymentStatus_STATE_ROLLED_BACK {
		e.Kind = hub.EventDeploymentRolledBack
		if v := ds.GetRolledBackVersion(); v > 0 {
			attrs["rolled_back_version"] = strconv.FormatUint(uint64(v), 10)
		}
		if s := ds.GetRolledBackSha256(); s != "" {
			attrs["rolled_back_sha256"] = s
		}
		e.Message = fmt.Sprintf("deployment %s rolled back on agent %s from version %d to %d", ds.GetName(), id, ds.GetRolledBackVersion(), ds.GetModelVersion())
		if s := ds.GetError(); s != "" {
			e.Message += ": " + s
		}
		return e
	}
	e.Kind = hub.EventDeploymentFailed
	e.Message = fmt.Sprintf("deployment %s failed on agent %s: %s", ds.GetName(), id, ds.GetError())
	return e
}

// recorded reports whether the latest event of e's kind for e's agent and
// deployment within the last week has the same attributes (then e is the
// same failure, seen again after a hub restart).
func (d *deploymentEvents) recorded(ctx context.Context, e hub.Event) bool {
	var last *hub.Event
	q := hub.EventQuery{Kinds: []string{e.Kind}, Agent: e.Agent, Deployment: e.Deployment, Since: time.Now().Add(-7 * 24 * time.Hour)}
	for {
		evs, err := d.st.ListEvents(ctx, q)
		if err != nil {
			return false
		}
		if len(evs) == 0 {
			break
		}
		last = &evs[len(evs)-1]
		q.After = last.ID
	}
	if last == nil || len(last.Attrs) != len(e.Attrs) {
		return false
	}
	for k, v := range e.Attrs {
		if last.Attrs[k] != v {
			return false
		}
	}
	return true
}

// runEvents applies the event log's retention every hour and, when a
// webhook URL is configured, delivers events to it, until ctx ends.
func runEvents(ctx context.Context, cfg Config, st hub.EventStore, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if cfg.WebhookURL != "" {
		w, err := webhook.New(webhook.Config{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret}, st, log.With("component", "webhook"))
		if err != nil {
			log.Error("webhook not started", "error", err) // Validate has checked the URL
		} else {
			wg.Go(func() { _ = w.Run(ctx) })
		}
	}
	r := hub.EventRetention{MaxAge: cfg.EventRetention, MaxCount: cfg.EventMaxCount}
	if r.MaxAge == 0 && r.MaxCount == 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := st.PruneEvents(ctx, time.Now(), r); err != nil {
			if ctx.Err() == nil {
				log.Error("prune events", "error", err)
			}
		} else if n > 0 {
			log.Info("pruned events", "removed", n, "max_age", r.MaxAge, "max_count", r.MaxCount)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
