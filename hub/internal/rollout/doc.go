// Package rollout turns deployments into the desired state of each agent
// and pushes it (docs/deployments.md).
//
// For every enrolled, non-revoked agent it computes the full DesiredState:
// every deployment of every workspace that targets the agent by id or by a
// label selector its labels match, ordered by name, each with the ModelRef
// (chunk hashes) of its model version and its runtime options. A state
// whose content changed gets the next generation, which the store assigns
// and persists per agent in one transaction (stored + 1, never computed
// from an earlier read) before it is pushed, so generations keep
// increasing across hub restarts and concurrent syncs over one database
// cannot collide; an unchanged state keeps its generation. States are
// pushed through a Pusher (hub/internal/fleet satisfies it).
//
// Lifecycle: New (the Rollout can then be handed to the fleet as its
// Observer), then Run(ctx, fleet) once: it syncs at start (pushing every
// agent's current state, as the fleet keeps desired states in memory
// only), then again whenever Notify is called (deployment created, updated
// or deleted; agent enrolled or revoked) or an agent the rollout has not
// pushed to comes online, and every Config.ResyncInterval (a backstop for
// changes nobody announced); it retries failed pushes every
// Config.RetryInterval. Sync may also be called directly (tests do).
//
// It also keeps, in memory, each agent's latest ReportedState (it is a
// fleet Observer; combine it with another with Tee) and derives from it the
// per-agent status of a deployment (Targets). After a hub restart every
// target reads pending until its agent reports again (every heartbeat).
//
// It does not store deployments, validate them (the store does), track
// presence, or talk MQTT.
package rollout
