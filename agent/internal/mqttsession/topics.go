package mqttsession

// TopicPrefix starts every topic of protocol v1; see docs/protocol.md.
const TopicPrefix = "atelier/v1/agents/"

// Topic leaves under TopicPrefix + agent id + "/".
const (
	LeafDesired        = "desired"
	LeafReported       = "reported"
	LeafPresence       = "presence"
	LeafChunksRequest  = "chunks/request"
	LeafChunksResponse = "chunks/response"
	LeafTelemetry      = "telemetry"
)

// Topic returns the topic of leaf for agent, e.g.
// Topic("edge-1", LeafDesired) = "atelier/v1/agents/edge-1/desired".
func Topic(agent, leaf string) string { return TopicPrefix + agent + "/" + leaf }

// ValidAgentID reports whether id matches [a-z0-9][a-z0-9-]{0,62}, the
// protocol's agent id syntax (one MQTT topic level, one NATS subject token).
func ValidAgentID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}
