// Package server assembles and runs the Atelier hub: the SQLite store, the
// content-addressed blob store, the embedded NATS broker (JetStream + MQTT)
// and the REST API over HTTP.
//
// Lifecycle: DefaultConfig, optionally LoadConfig from YAML, Validate, New,
// then Run(ctx), which binds every listener, writes <data>/hub.addr (the
// bound addresses as JSON), closes Ready(), and blocks until ctx is done.
// On shutdown it stops accepting requests, ends log streams, drains
// in-flight requests (up to ShutdownTimeout), shuts the broker down and
// closes the store, then removes hub.addr.
//
// It does not handle signals (cmd/ cancels ctx) and does not authenticate
// anyone yet: the HTTP API listens on loopback by default and logs a
// warning when it does not.
package server
