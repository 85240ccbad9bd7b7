// Package fleet is the hub's side of the hub ↔ agent protocol v1
// (docs/protocol.md) over MQTT: one paho client of the hub's own broker user
// that
//
//   - publishes each agent's DesiredState retained (QoS 1) on
//     atelier/v1/agents/{agent}/desired (SetDesired), and publishes it again
//     when a ReportedState shows an older observed_generation (the NATS MQTT
//     listener can miss a retained message for a subscription made just
//     after its publication), at most once per Config.RepublishInterval;
//   - answers ChunkRequests from a hub.Blobs, only for digests the agent's
//     current desired state references (anything else gets
//     ChunkResponse.error), capping each request at
//     Config.MaxChunksPerRequest chunks;
//   - builds ModelRefs (per-chunk sha256) once per blob and chunk size, and
//     caches them;
//   - hands every ReportedState and Presence (retained ones and last wills
//     included) to an Observer, in arrival order;
//   - with Config.Telemetry set, decodes TelemetryUploads from
//     atelier/v1/agents/+/telemetry and hands them to that TelemetrySink
//     without blocking (retained, undecodable and overflowing uploads are
//     dropped unacknowledged, so the agent resends them; malformed
//     sequence numbers are refused with TelemetryAck.error), and publishes
//     the sink's TelemetryAcks (AckTelemetry, QoS 1).
//
// It trusts the topic's agent id: the broker (hub/internal/broker with
// AuthConfig) lets an agent publish only under its own id.
//
// Lifecycle: New, then Run(ctx) once; SetDesired and ModelRef may be called
// at any time, concurrently. Desired states live in memory only: the
// deployments store is the system of record and must call SetDesired for
// every agent after a hub restart (until then chunk requests are refused
// and the broker's retained message is what agents see).
//
// The package does not compute desired states from deployments, persist
// anything, track heartbeats/offline timeouts, or store telemetry (the
// sink does, and decides when to acknowledge).
package fleet
