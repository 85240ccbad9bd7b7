// Package mqttsession is the agent's side of the MQTT transport of the
// hub ↔ agent protocol v1 (docs/protocol.md), over MQTT 3.1.1 with paho.
//
// A Session owns one persistent MQTT session (client id = agent id, clean
// session false, user name and password from enrollment):
//
//   - connect: a retained OFFLINE Presence is registered as the last will;
//     after CONNACK it subscribes (QoS 1) to .../desired,
//     .../chunks/response and .../telemetry/ack, then publishes a retained ONLINE Presence with
//     the host's capabilities, then calls Handlers.Connected;
//   - while connected: each DesiredState (the retained one arrives on every
//     connect) goes to Handlers.Desired; PublishReported sends ReportedState;
//     PublishTelemetry sends a TelemetryUpload and each TelemetryAck goes to
//     Handlers.TelemetryAck (matching acks to uploads, resending and the
//     spool are the agent's);
//   - on connection loss: a new paho client is built and connected again
//     after a jittered exponential backoff (Config.MinBackoff..MaxBackoff,
//     the first retry included, so a fleet does not reconnect in one burst;
//     the first failure that is not "connection refused" after refusals
//     starts the backoff again from MinBackoff: the broker is back, only
//     busy, and a full MaxBackoff more would slow a fleet's drain);
//     paho's own reconnect is off so each attempt carries a fresh will;
//   - on Run's context end: a retained OFFLINE Presence, then DISCONNECT.
//
// Session also implements modelcache.ChunkSource (and ChunkCounter): Chunk
// publishes ChunkRequest{correlation_id, sha256, index, count} on
// .../chunks/request, keeps a window of chunks in flight and matches each
// ChunkResponse by correlation id and index. Requests lost to a reconnect are
// sent again once the session is back; chunks already received are never
// requested again.
//
// The package does not validate desired states, verify chunks or decide what
// to deploy: that is the agent's reconcile loop and the model cache. The
// hub's side of these topics is not here.
package mqttsession
