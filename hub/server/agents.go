package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/broker"
	"github.com/atelier-ml/atelier/hub/internal/fleet"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Agent presence: what the hub records of agents from the protocol, and
// how revocation reaches the broker.

// DefaultHeartbeat is the heartbeat assumed for an agent whose Presence
// gives none (docs/protocol.md: 10 s).
const DefaultHeartbeat = 10 * time.Second

// MissedHeartbeats is how many heartbeat intervals without a message make
// an online agent offline.
const MissedHeartbeats = 3

// storeCredentials lets the broker verify agents against the store.
type storeCredentials struct{ st hub.AgentStore }

var _ broker.Credentials = storeCredentials{}

func (c storeCredentials) Verify(ctx context.Context, id, secret string) (bool, error) {
	return c.st.VerifyAgentSecret(ctx, id, secret)
}

// presence is the fleet.Observer of the hub: it records presence,
// capabilities and reports in the store, and its sweeper marks offline an
// online agent not heard from for MissedHeartbeats of its heartbeat
// interval. Store writes happen on the fleet's observer goroutine (and the
// sweeper's); a failed write is logged, and the next message retries.
//
// It records agent_online and agent_offline events on transitions only,
// judged against the store's state before the write (the system of
// record, which survives hub restarts): a presence message or report that
// does not change the agent's state records nothing.
//
// ReportedStates (one per agent per heartbeat) are buffered and written in
// one transaction per sweep period, so last_seen and the observed
// generation in the store lag by at most that period; a thousand agents
// with a 10 s heartbeat cost one small write a second instead of a hundred.
type presence struct {
	st    hub.AgentStore
	ev    eventRecorder
	log   *slog.Logger
	now   func() time.Time
	sweep time.Duration // sweeper and report-flush period

	mu      sync.Mutex
	agents  map[string]*seen           // online agents only
	pending map[string]hub.AgentReport // reports not yet written

	// wmu orders report flushes against offline writes, so a buffered
	// report never lands after (and undoes) the agent going offline.
	wmu sync.Mutex
}

type seen struct {
	last      time.Time
	heartbeat time.Duration
}

var _ fleet.Observer = (*presence)(nil)

// presenceStore is what presence writes to.
type presenceStore interface {
	hub.AgentStore
	hub.EventStore
}

func newPresence(st presenceStore, sweep time.Duration, log *slog.Logger) *presence {
	return &presence{st: st, ev: eventRecorder{st: st, log: log}, log: log, now: time.Now, sweep: sweep, agents: map[string]*seen{}, pending: map[string]hub.AgentReport{}}
}

func capsFrom(c *agentv1.Capabilities) *hub.Capabilities {
	if c == nil {
		return nil
	}
	caps := &hub.Capabilities{Kind: c.GetKind(), OS: c.GetOs(), Arch: c.GetArch(), CPUs: c.GetCpus(), MemoryBytes: c.GetMemoryBytes(),
		ONNXRuntimeVersion: c.GetOnnxruntimeVersion(), AgentVersion: c.GetAgentVersion()}
	if d := c.GetFpga(); d != nil {
		caps.FPGA = &hub.FPGADevice{Name: d.GetName(), ArrayRows: d.GetArrayRows(), ArrayCols: d.GetArrayCols(),
			ClockMHz: d.GetClockMhz(), MemoryBytes: d.GetMemoryBytes(), Firmware: d.GetFirmware()}
	}
	return caps
}

// Presence implements fleet.Observer.
func (p *presence) Presence(ctx context.Context, id string, m *agentv1.Presence) {
	now := p.now()
	switch m.GetStatus() {
	case agentv1.Presence_STATUS_ONLINE:
		hb := time.Duration(m.GetHeartbeatSeconds()) * time.Second
		if hb <= 0 {
			hb = DefaultHeartbeat
		}
		p.mu.Lock()
		p.agents[id] = &seen{last: now, heartbeat: hb}
		p.mu.Unlock()
		was := p.stateOf(ctx, id)
		if err := p.st.SetAgentPresence(ctx, id, true, capsFrom(m.GetCapabilities()), now); err != nil {
			p.storeFailed(ctx, "record agent online", id, err)
			return
		}
		if was == hub.AgentOffline {
			p.ev.record(ctx, hub.Event{Time: now, Kind: hub.EventAgentOnline, Agent: id, Message: "agent connected"})
		}
	case agentv1.Presence_STATUS_OFFLINE:
		p.offline(ctx, id, now, "agent disconnected", map[string]string{"reason": "disconnected"})
	}
}

// Reported implements fleet.Observer: a report is a heartbeat. It is
// written to the store with the next flush.
func (p *presence) Reported(ctx context.Context, id string, r *agentv1.ReportedState) {
	now := p.now()
	p.mu.Lock()
	s := p.agents[id]
	back := s == nil
	if back {
		s = &seen{heartbeat: DefaultHeartbeat}
		p.agents[id] = s
	}
	s.last = now
	p.pending[id] = hub.AgentReport{ObservedGeneration: r.GetObservedGeneration(), Endpoint: r.GetEndpoint(), At: now}
	p.mu.Unlock()
	// An agent not tracked as online that reports again (after being
	// marked offline for missed heartbeats) comes back online with the
	// next flush, which writes online = 1.
	if back && p.stateOf(ctx, id) == hub.AgentOffline {
		p.ev.record(ctx, hub.Event{Time: now, Kind: hub.EventAgentOnline, Agent: id, Message: "agent reporting again"})
	}
}

// stateOf returns the agent's state in the store, or "" if it cannot be
// read (then no presence event is recorded).
func (p *presence) stateOf(ctx context.Context, id string) hub.AgentState {
	a, err := p.st.GetAgent(ctx, id)
	if err != nil {
		if !errors.Is(err, hub.ErrNotFound) {
			p.storeFailed(ctx, "read agent state", id, err)
		}
		return ""
	}
	return a.State
}

// flush writes the buffered reports in one store write. A failed write
// keeps nothing: the next heartbeat brings a fresh report.
func (p *presence) flush(ctx context.Context) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	batch := p.pending
	p.pending = map[string]hub.AgentReport{}
	p.mu.Unlock()
	if err := p.st.RecordAgentReports(ctx, batch); err != nil {
		p.storeFailed(ctx, "record agent reports", "", err)
	}
}

// offline records the agent offline; why says how that was found (for
// the agent_offline event).
func (p *presence) offline(ctx context.Context, id string, at time.Time, why string, attrs map[string]string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	delete(p.agents, id)
	delete(p.pending, id)
	p.mu.Unlock()
	was := p.stateOf(ctx, id)
	if err := p.st.SetAgentPresence(ctx, id, false, nil, at); err != nil {
		p.storeFailed(ctx, "record agent offline", id, err)
		return
	}
	if was == hub.AgentOnline {
		p.ev.record(ctx, hub.Event{Time: at, Kind: hub.EventAgentOffline, Agent: id, Message: why, Attrs: attrs})
	}
}

// storeFailed logs a presence write that failed. While the hub shuts down
// (ctx canceled) that is expected and logged at debug level: the next start
// gives every agent the store holds online MissedHeartbeats to be heard from.
func (p *presence) storeFailed(ctx context.Context, msg, id string, err error) {
	if ctx.Err() != nil {
		p.log.Debug(msg+": hub shutting down", "agent", id, "error", err)
		return
	}
	p.log.Error(msg, "agent", id, "error", err)
}

// forget drops a (revoked) agent from the sweeper and the report buffer.
func (p *presence) forget(id string) {
	p.mu.Lock()
	delete(p.agents, id)
	delete(p.pending, id)
	p.mu.Unlock()
}

// run loads the agents the store says are online (they get
// MissedHeartbeats intervals from now to be heard from, as after a hub
// restart their last messages went to the previous process), then sweeps
// every p.sweep (flushing buffered reports first) until ctx ends. An agent silent for MissedHeartbeats ×
// its heartbeat is marked offline at most p.sweep later.
func (p *presence) run(ctx context.Context) {
	if list, err := p.st.ListAgents(ctx); err != nil {
		p.log.Error("load agents for the presence sweeper", "error", err)
	} else {
		now := p.now()
		p.mu.Lock()
		for _, a := range list {
			if a.State == hub.AgentOnline && p.agents[a.ID] == nil {
				p.agents[a.ID] = &seen{last: now, heartbeat: DefaultHeartbeat}
			}
		}
		p.mu.Unlock()
	}
	t := time.NewTicker(p.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.flush(ctx)
		now := p.now()
		stale := map[string]time.Duration{}
		p.mu.Lock()
		for id, s := range p.agents {
			if now.Sub(s.last) > MissedHeartbeats*s.heartbeat {
				stale[id] = now.Sub(s.last)
			}
		}
		p.mu.Unlock()
		for id, silent := range stale {
			p.log.Info("agent missed its heartbeats; marking offline", "agent", id)
			p.offline(ctx, id, now, fmt.Sprintf("agent missed its heartbeats: silent for %s", silent.Round(time.Second)),
				map[string]string{"reason": "missed_heartbeats"})
		}
	}
}

// revoker implements api.AgentRevoker: the store has already revoked the
// agent (the broker refuses its CONNECTs), so close its connections and
// forget its desired state.
type revoker struct {
	br  *broker.Broker
	fl  *fleet.Fleet
	pr  *presence
	log *slog.Logger
}

func (r *revoker) RevokeAgent(ctx context.Context, id string) error {
	n, err := r.br.DisconnectAgent(id)
	if err != nil {
		return err
	}
	r.pr.forget(id)
	if err := r.fl.RemoveAgent(ctx, id); err != nil {
		return err
	}
	r.log.Info("agent revoked: connections closed, desired state cleared", "agent", id, "connections", n)
	return nil
}
