package hub

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ErrUnauthorized means a credential (a join token) is unknown, expired or
// already used. The API answers 401 with code "unauthorized".
var ErrUnauthorized = errors.New("unauthorized")

// Agents are hub-wide: they are not kept per workspace. A deployment (made
// in a workspace) targets agents by id or by label selector.

// AgentState is an agent's presence as the hub last saw it.
type AgentState string

// Agent states.
const (
	// AgentOnline: the agent's broker session is up (ONLINE presence, and a
	// heartbeat within the last three of its heartbeat intervals).
	AgentOnline AgentState = "online"
	// AgentOffline: enrolled, but not connected (last will, missed
	// heartbeats, or never connected yet).
	AgentOffline AgentState = "offline"
	// AgentRevoked: its credential is revoked; the broker refuses it.
	AgentRevoked AgentState = "revoked"
)

// Agent kinds (Capabilities.Kind).
const (
	KindEdge      = "edge"
	KindContainer = "container"
	KindFPGA      = "fpga"
)

// Join token limits.
const (
	DefaultJoinTokenTTL = time.Hour
	MaxJoinTokenTTL     = 7 * 24 * time.Hour
	MaxLabels           = 64
)

// Capabilities describe an agent's host, as it reports them at enrollment
// and in its ONLINE presence (the JSON form of agentv1.Capabilities).
type Capabilities struct {
	Kind               string `json:"kind"`
	OS                 string `json:"os"`
	Arch               string `json:"arch"`
	CPUs               uint32 `json:"cpus"`
	MemoryBytes        uint64 `json:"memory_bytes"`
	ONNXRuntimeVersion string `json:"onnxruntime_version,omitempty"`
	AgentVersion       string `json:"agent_version,omitempty"`
	// FPGA is the card of an agent of kind fpga; nil for other kinds.
	FPGA *FPGADevice `json:"fpga,omitempty"`
}

// FPGADevice describes an FPGA agent's card (agentv1.FPGADevice).
type FPGADevice struct {
	Name        string `json:"name"`
	ArrayRows   uint32 `json:"array_rows"`
	ArrayCols   uint32 `json:"array_cols"`
	ClockMHz    uint32 `json:"clock_mhz"`
	MemoryBytes uint64 `json:"memory_bytes"`
	// Firmware is the card's firmware/bitstream id.
	Firmware string `json:"firmware"`
}

// Agent is an enrolled agent.
type Agent struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Kind         string            `json:"kind"`
	Labels       map[string]string `json:"labels"`
	State        AgentState        `json:"state"`
	LastSeen     *time.Time        `json:"last_seen"` // null until its first message
	Capabilities Capabilities      `json:"capabilities"`
	EnrolledAt   time.Time         `json:"enrolled_at"`
	RevokedAt    *time.Time        `json:"revoked_at,omitempty"`
	// Endpoint is the scoring endpoint its last ReportedState named.
	Endpoint string `json:"endpoint,omitempty"`
	// ObservedGeneration is the desired-state generation its last
	// ReportedState answered.
	ObservedGeneration uint64 `json:"observed_generation"`
}

// JoinTokenCreate is the body of POST /api/v1/agents/tokens. TTL is a Go
// duration ("30m", "24h"): default DefaultJoinTokenTTL, at most
// MaxJoinTokenTTL.
type JoinTokenCreate struct {
	Labels map[string]string `json:"labels,omitempty"`
	TTL    string            `json:"ttl,omitempty"`
}

// JoinToken is a created join token. Token exists in clear only in this
// answer: the store keeps its sha256.
type JoinToken struct {
	Token     string            `json:"token"`
	ExpiresAt time.Time         `json:"expires_at"`
	Labels    map[string]string `json:"labels"`
}

// EnrollRequest is the body of POST /api/v1/agents/enroll. The agent's
// labels are the token's labels overlaid with these (the request wins on a
// key both set).
type EnrollRequest struct {
	Token        string            `json:"token"`
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels,omitempty"`
	Capabilities Capabilities      `json:"capabilities"`
}

// Enrollment is the answer to an enrollment: the agent's id (its broker
// user and MQTT client id), its broker secret (in clear only here) and the
// broker's MQTT URL.
type Enrollment struct {
	AgentID string `json:"agent_id"`
	Secret  string `json:"secret"`
	MQTTURL string `json:"mqtt_url"`
}

// AgentReport is what the hub keeps of an agent's last ReportedState.
type AgentReport struct {
	ObservedGeneration uint64
	Endpoint           string
	// At is when the hub received the report.
	At time.Time
}

// AgentStore keeps join tokens and agents. Secrets and tokens are stored
// only as sha256 hashes.
type AgentStore interface {
	// CreateJoinToken creates a one-time join token valid for ttl (0 means
	// DefaultJoinTokenTTL; above MaxJoinTokenTTL is ErrInvalid).
	CreateJoinToken(ctx context.Context, labels map[string]string, ttl time.Duration) (JoinToken, error)
	// Enroll consumes the join token and creates the agent with a new
	// secret, atomically. An unknown, used or expired token is an error
	// wrapping ErrUnauthorized that names which; a name already used by a
	// non-revoked agent is ErrConflict (the token stays unused).
	Enroll(ctx context.Context, req EnrollRequest) (Agent, string, error)
	ListAgents(ctx context.Context) ([]Agent, error)
	GetAgent(ctx context.Context, id string) (Agent, error)
	// RevokeAgent marks the agent revoked (idempotent); VerifyAgentSecret
	// refuses it from then on.
	RevokeAgent(ctx context.Context, id string) (Agent, error)
	// VerifyAgentSecret reports whether secret is the secret of the
	// non-revoked agent id (constant-time comparison of hashes).
	VerifyAgentSecret(ctx context.Context, id, secret string) (bool, error)
	// SetAgentPresence records an agent going online (with its
	// capabilities when caps is not nil) or offline at time at. It does
	// nothing to a revoked or unknown agent.
	SetAgentPresence(ctx context.Context, id string, online bool, caps *Capabilities, at time.Time) error
	// RecordAgentReports records the latest ReportedState of each agent in
	// reports (keyed by agent id) and marks those agents online, in one
	// write. It skips revoked and unknown agents.
	RecordAgentReports(ctx context.Context, reports map[string]AgentReport) error
}

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckAgentName validates an agent's display name: 1-63 characters from
// A-Z a-z 0-9 . _ -, starting with a letter or digit.
func CheckAgentName(name string) error {
	if !agentNameRE.MatchString(name) {
		return fmt.Errorf("agent name %q: must be 1-63 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit: %w", name, ErrInvalid)
	}
	return nil
}

// CheckLabels validates agent labels: at most MaxLabels, keys by the key
// rule (KeyRule), values of at most 256 bytes.
func CheckLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("labels: %d labels exceed the limit of %d: %w", len(labels), MaxLabels, ErrInvalid)
	}
	for k, v := range labels {
		if err := CheckKey("label", k); err != nil {
			return err
		}
		if len(v) > 256 {
			return fmt.Errorf("label %q: value of %d bytes exceeds the limit of 256: %w", k, len(v), ErrInvalid)
		}
	}
	return nil
}

// CheckCapabilities validates what an enrolling agent reports: Kind must
// be one of edge, container, fpga; strings at most 256 bytes; FPGA only
// for kind fpga.
func CheckCapabilities(c Capabilities) error {
	switch c.Kind {
	case KindEdge, KindContainer, KindFPGA:
	default:
		return fmt.Errorf("capabilities.kind %q: expected edge, container or fpga: %w", c.Kind, ErrInvalid)
	}
	for name, v := range map[string]string{"os": c.OS, "arch": c.Arch, "onnxruntime_version": c.ONNXRuntimeVersion, "agent_version": c.AgentVersion} {
		if len(v) > 256 {
			return fmt.Errorf("capabilities.%s: %d bytes exceed the limit of 256: %w", name, len(v), ErrInvalid)
		}
	}
	if c.FPGA != nil {
		if c.Kind != KindFPGA {
			return fmt.Errorf("capabilities.fpga: given for kind %q; only agents of kind fpga have a card: %w", c.Kind, ErrInvalid)
		}
		for name, v := range map[string]string{"name": c.FPGA.Name, "firmware": c.FPGA.Firmware} {
			if len(v) > 256 {
				return fmt.Errorf("capabilities.fpga.%s: %d bytes exceed the limit of 256: %w", name, len(v), ErrInvalid)
			}
		}
	}
	return nil
}

// ParseJoinTokenTTL parses a join token's ttl: "" is DefaultJoinTokenTTL;
// otherwise a positive Go duration of at most MaxJoinTokenTTL.
func ParseJoinTokenTTL(s string) (time.Duration, error) {
	if s == "" {
		return DefaultJoinTokenTTL, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("ttl %q: expected a duration such as 30m or 24h: %w", s, ErrInvalid)
	}
	if d <= 0 || d > MaxJoinTokenTTL {
		return 0, fmt.Errorf("ttl %q: must be above 0 and at most %s (7 days): %w", s, MaxJoinTokenTTL, ErrInvalid)
	}
	return d, nil
}
