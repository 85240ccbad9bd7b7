package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Errors of authentication and credentials.
var (
	// ErrInvalidConfig means a Config or AuthConfig field is missing or
	// out of range.
	ErrInvalidConfig = errors.New("invalid broker config")
	// ErrInvalidAgentID means an agent id does not match
	// [a-z0-9][a-z0-9-]{0,62}.
	ErrInvalidAgentID = errors.New("invalid agent id")
)

// HubUser is the broker user name of the hub's own clients. It is not a
// valid agent id (agent ids have no '_'), so no agent can claim it.
const HubUser = "_atelier_hub"

// Credentials verifies an agent's broker secret. The agent store will
// implement it (persisting only hashes); Registry is the in-memory one.
// Verify is called on the broker's connection goroutine for every CONNECT,
// so it must be fast; it reports false for an unknown or revoked agent or
// a wrong secret, and an error only when it cannot tell (the connection is
// refused either way).
type Credentials interface {
	Verify(ctx context.Context, agentID, secret string) (bool, error)
}

// AuthConfig turns authentication on: every client, MQTT or NATS, must
// present either HubUser and HubSecret (full rights) or an agent id and
// its secret (rights on its own topics only, see AgentPermissions).
type AuthConfig struct {
	// Credentials verifies agents' secrets. Required.
	Credentials Credentials
	// HubSecret is the password of HubUser: at least 32 characters, e.g.
	// NewSecret() at every start (it never needs to leave the process).
	HubSecret string
	// VerifyTimeout bounds one Credentials.Verify call (default 5s).
	VerifyTimeout time.Duration
}

func (c *AuthConfig) check() error {
	if c.Credentials == nil {
		return fmt.Errorf("broker: auth: %w: Credentials is nil", ErrInvalidConfig)
	}
	if len(c.HubSecret) < 32 {
		return fmt.Errorf("broker: auth: %w: HubSecret has %d characters, need at least 32", ErrInvalidConfig, len(c.HubSecret))
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = 5 * time.Second
	}
	return nil
}

// NewSecret returns a random secret: 32 bytes from crypto/rand, base64url
// encoded without padding (43 characters).
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret is the hash under which a secret is stored: sha256 of its
// bytes. Secrets are high-entropy random tokens, so a fast hash is enough.
func HashSecret(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// AgentPermissions are the broker permissions of agent id: publish on
// reported, presence, telemetry and chunks/request, subscribe to desired
// and chunks/response, all under its own id, and nothing else. No "$MQTT."
// subject needs granting: nats-server implicitly allows an MQTT client the
// internal "$MQTT.sub." subscriptions its QoS 1 subscriptions use, and
// stores QoS 1 and retained messages through internal clients.
func AgentPermissions(id string) *server.Permissions {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{},
		Subscribe: &server.SubjectPermission{},
	}
	for _, leaf := range topics.AgentPublishes() {
		p.Publish.Allow = append(p.Publish.Allow, topics.Subject(id, leaf))
	}
	for _, leaf := range topics.AgentSubscribes() {
		p.Subscribe.Allow = append(p.Subscribe.Allow, topics.Subject(id, leaf))
	}
	return p
}

// authenticator implements server.Authentication.
type authenticator struct {
	cfg     AuthConfig // zero when open
	open    bool       // no Config.Auth: anyone may connect, with full rights
	hubHash [sha256.Size]byte
	log     *slog.Logger
	srv     atomic.Pointer[server.Server] // set by Start before clients can connect
	// ready is set by Start once the broker is set up: until then only
	// HubUser may connect (Start's own setup connection; the MQTT streams
	// must be made before any MQTT client's CONNECT makes them).
	ready atomic.Bool
}

var _ server.Authentication = (*authenticator)(nil)

// Check authenticates one client (NATS or MQTT) and sets its permissions.
// It runs on the client's connection goroutine with no server lock held.
// Besides Credentials.Verify it costs one Connz lookup by connection id
// (nats-server copies its client map for it: O(connections) per CONNECT).
//
// Never reload the server's options (Server.ReloadOptions) with custom
// authentication: on reload nats-server re-checks the publisher of every
// retained MQTT message against its configured users, which are empty
// here, and would delete them all (desired states and presences).
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	opts := c.GetOpts()
	user, secret := opts.Username, opts.Password
	if user == "" {
		user, secret = "", opts.Token
	}
	if user == HubUser {
		h := HashSecret(secret)
		if subtle.ConstantTimeCompare(h[:], a.hubHash[:]) != 1 {
			a.log.Warn("broker: refused hub client with a wrong secret", "remote", addr(c))
			return false
		}
		c.RegisterUser(&server.User{Username: HubUser}) // nil permissions: everything
		return true
	}
	if !a.ready.Load() {
		a.log.Debug("broker: refused client while the broker starts", "user", user, "remote", addr(c))
		return false
	}
	if a.open {
		c.RegisterUser(&server.User{Username: user}) // nil permissions: everything
		return true
	}
	if !topics.ValidAgentID(user) {
		a.log.Warn("broker: refused client with an invalid user name", "user", user, "remote", addr(c))
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.VerifyTimeout)
	defer cancel()
	ok, err := a.cfg.Credentials.Verify(ctx, user, secret)
	if err != nil {
		a.log.Error("broker: cannot verify agent credential; refusing", "agent", user, "error", err)
		return false
	}
	if !ok {
		a.log.Warn("broker: refused agent with an unknown id or a wrong secret", "agent", user, "remote", addr(c))
		return false
	}
	// An MQTT agent must use its id as client id: another client id would
	// let it take over (and evict) someone else's persistent session.
	if srv := a.srv.Load(); srv != nil {
		cid, isMQTT, err := mqttClientID(srv, c.GetID())
		if err != nil {
			a.log.Error("broker: cannot look up the client's MQTT client id; refusing", "agent", user, "error", err)
			return false
		}
		if isMQTT && cid != user {
			a.log.Warn("broker: refused agent whose MQTT client id is not its agent id", "agent", user, "client_id", cid)
			return false
		}
	} else {
		return false
	}
	c.RegisterUser(&server.User{Username: user, Permissions: AgentPermissions(user)})
	return true
}

func addr(c server.ClientAuthentication) string {
	if a := c.RemoteAddress(); a != nil {
		return a.String()
	}
	return ""
}

// mqttClientID returns the MQTT client id of connection cid; isMQTT is
// false for a NATS client.
func mqttClientID(srv *server.Server, cid uint64) (id string, isMQTT bool, err error) {
	cz, err := srv.Connz(&server.ConnzOptions{CID: cid})
	if err != nil {
		return "", false, err
	}
	if len(cz.Conns) != 1 {
		return "", false, fmt.Errorf("connection %d not found", cid)
	}
	ci := cz.Conns[0]
	return ci.MQTTClient, ci.MQTTClient != "", nil
}

// Registry is an in-memory, concurrency-safe Credentials: agent id → hash
// of its secret. It forgets everything when the process ends; persistent
// credentials come with the agent store, which will implement Credentials
// itself (keeping only hashes, as Registry does).
type Registry struct {
	mu     sync.RWMutex
	hashes map[string][sha256.Size]byte
}

var _ Credentials = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{hashes: map[string][sha256.Size]byte{}} }

// Issue creates (or replaces) agent id's credential and returns its secret,
// the only time the secret exists in clear. It fails with ErrInvalidAgentID
// for a malformed id.
func (r *Registry) Issue(id string) (string, error) {
	if !topics.ValidAgentID(id) {
		return "", fmt.Errorf("issue credential for %q: %w", id, ErrInvalidAgentID)
	}
	s := NewSecret()
	r.mu.Lock()
	r.hashes[id] = HashSecret(s)
	r.mu.Unlock()
	return s, nil
}

// Revoke forgets agent id's credential, so it is refused from its next
// CONNECT on; it reports whether there was one. It does not disconnect a
// connected agent: call Broker.DisconnectAgent for that.
func (r *Registry) Revoke(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.hashes[id]
	delete(r.hashes, id)
	return ok
}

// Verify implements Credentials with a constant-time comparison of hashes.
func (r *Registry) Verify(_ context.Context, id, secret string) (bool, error) {
	r.mu.RLock()
	want, ok := r.hashes[id]
	r.mu.RUnlock()
	got := HashSecret(secret)
	if !ok {
		want = [sha256.Size]byte{} // compare anyway: same cost for unknown ids
	}
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && ok, nil
}

// DisconnectAgent closes every connection (MQTT or NATS) authenticated as
// agent id and returns how many it closed. Together with revoking the
// credential first, this makes a revocation take effect at once: the
// broker publishes the agent's last will, and its reconnects are refused.
func (b *Broker) DisconnectAgent(id string) (int, error) {
	if b.ns == nil {
		return 0, fmt.Errorf("disconnect agent %q: %w", id, ErrNotReady)
	}
	if !topics.ValidAgentID(id) {
		return 0, fmt.Errorf("disconnect agent %q: %w", id, ErrInvalidAgentID)
	}
	cz, err := b.ns.Connz(&server.ConnzOptions{User: id, Limit: 1 << 20})
	if err != nil {
		return 0, fmt.Errorf("disconnect agent %q: %w", id, err)
	}
	b.log.Info("broker: disconnecting agent", "agent", id, "connections", len(cz.Conns))
	n := 0
	var errs []error
	for _, ci := range cz.Conns {
		if err := b.ns.DisconnectClientByID(ci.Cid); err != nil {
			// A connection that closed since Connz listed it (such as a
			// refused reconnect, listed while the broker closes it) is
			// gone already, which is what was asked.
			if open, cerr := b.ns.Connz(&server.ConnzOptions{CID: ci.Cid}); cerr == nil && len(open.Conns) == 0 {
				continue
			}
			errs = append(errs, err)
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("disconnect agent %q: %w", id, errors.Join(errs...))
	}
	return n, nil
}
