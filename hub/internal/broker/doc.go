// Package broker runs the hub's embedded NATS server with JetStream and
// its MQTT 3.1.1 listener (github.com/nats-io/nats-server/v2). The broker
// is transport, not storage of record: nothing the hub promises to keep may
// live only here.
//
// With Config.Auth set (auth.go) every client authenticates: the hub's own
// clients as HubUser with a per-process secret (full rights), each agent
// with its id and secret, checked against a Credentials (Registry is the
// in-memory one; the agent store will persist hashes) and limited to
// publishing reported, presence, telemetry and chunks/request and
// subscribing to desired and chunks/response under its own id, with its
// MQTT client id equal to its agent id. Revocation is Credentials-side
// removal plus DisconnectAgent.
//
// Start keeps nats-server's MQTT QoS 1 message stream ($MQTT_msgs) in
// memory (mqttstream.go), and lets no client but the hub's own connect
// until that is done.
//
// It does not define the protocol's topics (proto/agent/v1/topics) or
// speak the protocol (hub/internal/fleet).
package broker
