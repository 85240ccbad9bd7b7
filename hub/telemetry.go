package hub

// TelemetryStore keeps time series of agent telemetry (issue 5; see hub/internal/sqlite/telemetry.go).
type TelemetryStore interface{}
