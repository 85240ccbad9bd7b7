// Package server assembles and runs the Atelier hub: the SQLite store, the
// content-addressed blob store, the embedded NATS broker (JetStream + MQTT)
// with authentication on, the hub side of the agent protocol
// (hub/internal/fleet) and the REST API over HTTP.
//
// Agents: the broker verifies every agent's CONNECT against the store
// (sha256 of the secret from enrollment; revoked agents refused); the hub's
// own clients log in as broker.HubUser with a secret made at every start.
// The fleet's Observer records presence in the store: an ONLINE Presence
// (with capabilities) makes an agent online, an OFFLINE one (its last
// will) offline, and every ReportedState is a heartbeat (last_seen,
// endpoint, observed generation). A sweeper (every second) marks offline
// an online agent silent for MissedHeartbeats × its heartbeat interval, so
// an agent that vanishes without a last will is offline at most
// 3 × heartbeat + 1 s after its last message. Revocation (the API's revoke
// route) updates the store first, then closes the agent's broker
// connections and clears its desired state in the fleet.
//
// Deployments: the rollout (hub/internal/rollout) also observes the fleet
// (a Tee beside the presence observer; it keeps each agent's latest report
// in memory for the per-target states the API shows) and pushes every
// agent's desired state through the fleet once the fleet is connected,
// then after every deployment change, agent coming online for the first
// time, enrollment, forced workspace delete or revocation, and every
// minute (docs/deployments.md).
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
