package topics

import "strings"

// Prefix starts every topic of protocol v1.
const Prefix = "atelier/v1/agents/"

// Leaves under Prefix + agent id + "/".
const (
	Desired        = "desired"         // hub → agent, retained DesiredState
	Reported       = "reported"        // agent → hub, ReportedState
	Presence       = "presence"        // agent → hub, retained Presence (and last will)
	ChunksRequest  = "chunks/request"  // agent → hub, ChunkRequest
	ChunksResponse = "chunks/response" // hub → agent, ChunkResponse
	Telemetry      = "telemetry"       // agent → hub, TelemetryUpload
	TelemetryAck   = "telemetry/ack"   // hub → agent, TelemetryAck
)

// The leaves an agent publishes on and subscribes to. The broker grants an
// agent exactly these, on its own id only.
var (
	agentPublishes  = [...]string{Reported, Presence, Telemetry, ChunksRequest}
	agentSubscribes = [...]string{Desired, ChunksResponse, TelemetryAck}
)

// AgentPublishes returns the leaves an agent may publish on (a new slice).
func AgentPublishes() []string { return append([]string(nil), agentPublishes[:]...) }

// AgentSubscribes returns the leaves an agent may subscribe to (a new slice).
func AgentSubscribes() []string { return append([]string(nil), agentSubscribes[:]...) }

// Topic returns the MQTT topic of leaf for agent, e.g.
// Topic("edge-1", Desired) = "atelier/v1/agents/edge-1/desired".
func Topic(agent, leaf string) string { return Prefix + agent + "/" + leaf }

// All returns the MQTT topic filter matching leaf for every agent, e.g.
// All(Reported) = "atelier/v1/agents/+/reported".
func All(leaf string) string { return Prefix + "+/" + leaf }

// Subject returns the NATS subject of Topic(agent, leaf), e.g.
// "atelier.v1.agents.edge-1.chunks.request".
func Subject(agent, leaf string) string {
	return strings.ReplaceAll(Topic(agent, leaf), "/", ".")
}

// Parse splits a topic of protocol v1 into its agent id and leaf. ok is
// false unless the id is valid and the leaf is one of the protocol's.
func Parse(topic string) (agent, leaf string, ok bool) {
	rest, found := strings.CutPrefix(topic, Prefix)
	if !found {
		return "", "", false
	}
	agent, leaf, found = strings.Cut(rest, "/")
	if !found || !ValidAgentID(agent) {
		return "", "", false
	}
	switch leaf {
	case Desired, Reported, Presence, ChunksRequest, ChunksResponse, Telemetry, TelemetryAck:
		return agent, leaf, true
	}
	return "", "", false
}

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
