package hub

import (
	"context"
	"time"
)

// Event kinds recorded by the hub.
const (
	EventAgentOnline      = "agent_online"
	EventAgentOffline     = "agent_offline"
	EventDeploymentFailed = "deployment_failed"
	// EventDeploymentRolledBack is the hub seeing a target's reported state
	// become rolled_back; EventRollback is the agent's own account of the
	// rollback (with the rule that tripped), arriving with its telemetry.
	EventDeploymentRolledBack = "deployment_rolled_back"
	EventDriftDetected        = "drift_detected"
	EventDriftResolved        = "drift_resolved"
	EventRollback             = "rollback"
	EventDeviceFault          = "device_fault"
	EventDeviceRecovered      = "device_recovered"
	EventCPUFallback          = "cpu_fallback"
)

// EventKinds returns every event kind, in the order documented.
func EventKinds() []string {
	return []string{
		EventAgentOnline, EventAgentOffline, EventDeploymentFailed, EventDeploymentRolledBack,
		EventDriftDetected, EventDriftResolved, EventRollback, EventDeviceFault,
		EventDeviceRecovered, EventCPUFallback,
	}
}

// Event is something that happened in the fleet, kept in the hub's event
// log in the order it was recorded.
type Event struct {
	// ID increases with every event recorded (a cursor for following); an
	// ID is never reused, even after retention removed its event.
	ID         int64             `json:"id"`
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"`
	Agent      string            `json:"agent,omitempty"`
	Deployment string            `json:"deployment,omitempty"`
	Message    string            `json:"message"`
	Attrs      map[string]string `json:"attrs,omitempty"`
}

// EventQuery selects events: after a cursor, of some kinds, for one agent
// or deployment, since a time; at most Limit (0 takes a default).
type EventQuery struct {
	After      int64
	Kinds      []string
	Agent      string
	Deployment string
	Since      time.Time
	Limit      int
}

// EventRetention is how much of the event log is kept: events older than
// MaxAge, and the oldest beyond the newest MaxCount, are removed. A zero
// field does not limit.
type EventRetention struct {
	MaxAge   time.Duration
	MaxCount int64
}

// EventStore keeps the hub's event log.
type EventStore interface {
	// AddEvent records e, assigning ID (and Time, if zero) and returns it.
	// A kind, agent, deployment, message or attrs beyond the limits is
	// ErrInvalid and records nothing.
	AddEvent(ctx context.Context, e Event) (Event, error)
	// ListEvents returns matching events in ID order.
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
	// PruneEvents applies r as of now and returns how many events it
	// removed.
	PruneEvents(ctx context.Context, now time.Time, r EventRetention) (int64, error)
	// EventCursor returns the cursor (an event ID, 0 if never set) that a
	// named consumer of the log (a webhook) has acknowledged.
	EventCursor(ctx context.Context, consumer string) (int64, error)
	// SetEventCursor durably records consumer's cursor.
	SetEventCursor(ctx context.Context, consumer string, after int64) error
}
