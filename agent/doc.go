// Package agent is the Atelier agent daemon's core: it keeps a device's
// served deployments equal to what the hub wants, over the MQTT protocol of
// docs/protocol.md, and keeps serving the last good deployments when the hub
// is away.
//
// # Lifecycle
//
// New validates a Config, opens the model cache and prepares the MQTT
// session; it touches neither the network nor the Server. Run then:
//
//  1. restores from DataDir, without waiting for the hub: the persisted
//     desired state, then every deployment recorded as last serving, loaded
//     from the cache (re-hashed first) through Server.Load;
//  2. starts the MQTT session (mqttsession): persistent session, retained
//     ONLINE presence with an OFFLINE last will, reconnect with jittered
//     exponential backoff;
//  3. reconciles. A received DesiredState is validated (ValidateDesired);
//     one older than the applied generation is ignored; a newer one is
//     written to desired.pb (temp, fsync, rename, fsync dir) before anything
//     acts on it, and supersedes a reconcile pass in progress. For each
//     deployment the pass runs download (chunks verified one by one,
//     resumable) → verify (whole-file sha256) → Server.Load (load, warm-up,
//     atomic switch) → report; deployments no longer desired are unloaded.
//     Any failure keeps the previous version serving and reports
//     STATE_FAILED with the reason; the pass is retried after
//     Config.RetryInterval, on reconnect and on a redelivered state;
//  4. publishes a ReportedState after every state change and every
//     Config.Heartbeat; observed_generation is the generation acted on;
//  5. on ctx end, stops the pass, publishes a retained OFFLINE presence and
//     returns.
//
// Only the Run goroutine and the reconcile pass it starts call the Server,
// one call at a time.
//
// # On-disk layout (Config.DataDir)
//
//	desired.pb       the last accepted DesiredState (protobuf)
//	serving.pb       the last good versions loaded: a ReportedState holding
//	                 name, model_version and model_sha256 per deployment
//	models/<sha256>  verified model files (package modelcache)
//	models/partial/  transfers in progress: <sha256>.part and .progress
//
//	credentials.json the agent's id, broker secret, MQTT URL and hub URL
//	                 from enrollment (JSON, mode 0600; SaveCredentials)
//
// # Enrollment
//
// Enroll trades a one-time join token for Credentials with one POST to
// {hub}/api/v1/agents/enroll (see docs/protocol.md); SaveCredentials and
// LoadCredentials keep them in DataDir. DetectCapabilities describes the
// machine for enrollment and presence.
//
// The package does not serve models (the Server does: package agent/edge
// for the in-process ONNX Runtime one) or spool telemetry.
package agent
