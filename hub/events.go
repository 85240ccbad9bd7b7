package hub

// EventStore keeps the hub's event log.
type EventStore interface{}
