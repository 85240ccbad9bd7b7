package agent

import (
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// maxPendingEvents bounds the events waiting for the next telemetry batch;
// beyond it the oldest are dropped (and counted).
const maxPendingEvents = 256

// DeviceStats are an accelerator's running totals for one deployment.
type DeviceStats struct {
	// Backend is where requests run now: "cpu", "fpga" or "cpu-fallback".
	Backend string
	// Faults counts device faults seen; Fallbacks requests scored on the
	// CPU because the device was down.
	Faults, Fallbacks uint64
}

// DeviceReporter is implemented by Servers with an accelerator (an FPGA
// agent's). The agent's telemetry reads it every interval.
type DeviceReporter interface {
	// DeviceStats returns the totals of every deployment served.
	DeviceStats() map[string]DeviceStats
}

// StatsFunc returns the scoring totals of every loaded (and recently
// unloaded) model version; scoring.Registry.Stats is one. The agent reads
// it for telemetry and guard rules; VersionStats.Model is the deployment
// name and Version its model version number (as the Server loaded it).
type StatsFunc func() []scoring.VersionStats

// event queues e for the next telemetry batch; Time is set if zero. Safe
// for concurrent use.
func (a *Agent) event(e *agentv1.AgentEvent) {
	if e.GetTimeUnixNano() == 0 {
		e.TimeUnixNano = time.Now().UnixNano()
	}
	a.evMu.Lock()
	defer a.evMu.Unlock()
	a.events = append(a.events, e)
	if n := len(a.events); n > maxPendingEvents {
		a.eventsDropped += uint64(n - maxPendingEvents)
		a.events = append(a.events[:0], a.events[n-maxPendingEvents:]...)
	}
	a.log.Info("agent event", "kind", e.GetKind(), "deployment", e.GetDeployment(), "message", e.GetMessage())
}

// takeEvents returns and clears the queued events and how many were
// dropped since the last call.
func (a *Agent) takeEvents() ([]*agentv1.AgentEvent, uint64) {
	a.evMu.Lock()
	defer a.evMu.Unlock()
	ev, dropped := a.events, a.eventsDropped
	a.events, a.eventsDropped = nil, 0
	return ev, dropped
}
