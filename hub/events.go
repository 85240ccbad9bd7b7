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
	EventDriftDetected    = "drift_detected"
	EventDriftResolved    = "drift_resolved"
	EventRollback         = "rollback"
	EventDeviceFault      = "device_fault"
	EventCPUFallback      = "cpu_fallback"
)

// Event is something that happened in the fleet, kept in the hub's event
// log in the order it was recorded.
type Event struct {
	// ID increases with every event recorded (a cursor for following).
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

// EventStore keeps the hub's event log.
type EventStore interface {
	// AddEvent records e, assigning ID (and Time, if zero) and returns it.
	AddEvent(ctx context.Context, e Event) (Event, error)
	// ListEvents returns matching events in ID order.
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
}
