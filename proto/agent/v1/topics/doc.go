// Package topics names the MQTT topics (and the NATS subjects they map to)
// of the hub ↔ agent protocol v1, for both sides: the hub (hub/internal/fleet,
// hub/internal/broker's per-agent permissions) and the agent.
//
// Every topic is Prefix + agent id + "/" + leaf. The agent id syntax
// ([a-z0-9][a-z0-9-]{0,62}, ValidAgentID) makes an id exactly one MQTT topic
// level and one NATS subject token, so MQTT topic a/b/c is NATS subject a.b.c.
//
// The package holds names only: no I/O, no message encoding. The layout is
// documented in docs/protocol.md.
package topics
