// Package rolloutbench measures how long a deployment takes to reach a
// fleet, and compares it with what the broker alone can do.
//
// Run starts a real hub in-process and a testbench/fleetsim fleet of N
// agents (each enrolled over REST, each on its own MQTT connection with its
// own credential, downloading and verifying every chunk), registers a
// model of M MiB, waits until every agent is online, then times a
// deployment by label selector until the hub's deployment shows all N
// serving it (rollout_seconds). In the same run it times the same bytes,
// in the same 256 KiB chunks, published with QoS 1 to N subscribers with
// persistent sessions, one topic each, through a broker configured as the
// hub's embedded one (raw_fanout_seconds), and again with QoS 0
// (raw_fanout_qos0_seconds), the QoS the protocol's chunk responses use:
// the protocol's floor. The ratio of the rollout to the faster of the two
// is the protocol's cost. Each is measured --rounds times (every
// rollout round deploys a new model version) and the medians are reported.
//
// The raw fan-out uses its own broker instance (same nats-server version
// and options, in the same process, without authentication) because the
// hub's broker admits only agents on their own topics and the hub's own
// clients, whose secret is made at every start and not exported.
//
// It does not score, and it does not measure agents on separate machines:
// everything shares this machine's cores and loopback, and the hub, the
// broker and the fleet share one Go heap and garbage collector.
// --cpuprofile writes a CPU profile of the rollout rounds.
//
//	go run ./testbench/cmd/bench rollout --agents 50 --model-mib 10
package rolloutbench
