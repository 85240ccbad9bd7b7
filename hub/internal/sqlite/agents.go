package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// Agents and join tokens (see the agents migration in schema.go). Tokens
// and secrets are random 256-bit strings stored only as their sha256.

var _ hub.AgentStore = (*Store)(nil)

// newSecret returns 32 random bytes, base64url without padding (43
// characters), the same form as broker.NewSecret.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// CreateJoinToken implements hub.AgentStore.
func (s *Store) CreateJoinToken(ctx context.Context, labels map[string]string, ttl time.Duration) (hub.JoinToken, error) {
	if ttl == 0 {
		ttl = hub.DefaultJoinTokenTTL
	}
	if ttl < 0 || ttl > hub.MaxJoinTokenTTL {
		return hub.JoinToken{}, fmt.Errorf("join token ttl %s: must be above 0 and at most %s: %w", ttl, hub.MaxJoinTokenTTL, hub.ErrInvalid)
	}
	if err := hub.CheckLabels(labels); err != nil {
		return hub.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return hub.JoinToken{}, err
	}
	now := s.now()
	tok := hub.JoinToken{Token: newSecret(), ExpiresAt: now.Add(ttl).UTC(), Labels: labels}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO join_tokens (hash, labels, created_at, expires_at) VALUES (?, ?, ?, ?)",
			hashSecret(tok.Token), string(lj), nanos(now), nanos(tok.ExpiresAt))
		return err
	})
	if err != nil {
		return hub.JoinToken{}, fmt.Errorf("create join token: %w", err)
	}
	return tok, nil
}

// agentIDFor derives a readable, unique agent id from a name: the name
// lowercased with '.' and '_' turned into '-', cut to 50 characters, then
// "-" and 12 random hex digits. It always matches topics.ValidAgentID.
func agentIDFor(name string) string {
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, name)
	if len(base) > 50 {
		base = base[:50]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

// Enroll implements hub.AgentStore.
func (s *Store) Enroll(ctx context.Context, req hub.EnrollRequest) (hub.Agent, string, error) {
	if req.Token == "" {
		return hub.Agent{}, "", fmt.Errorf("enroll: token is empty: expected the join token from 'atelier agent token create': %w", hub.ErrInvalid)
	}
	if err := hub.CheckAgentName(req.Name); err != nil {
		return hub.Agent{}, "", fmt.Errorf("enroll: %w", err)
	}
	if err := hub.CheckLabels(req.Labels); err != nil {
		return hub.Agent{}, "", fmt.Errorf("enroll: %w", err)
	}
	if err := hub.CheckCapabilities(req.Capabilities); err != nil {
		return hub.Agent{}, "", fmt.Errorf("enroll: %w", err)
	}
	caps, err := json.Marshal(req.Capabilities)
	if err != nil {
		return hub.Agent{}, "", err
	}
	secret := newSecret()
	now := s.now()
	a := hub.Agent{ID: agentIDFor(req.Name), Name: req.Name, Kind: req.Capabilities.Kind, State: hub.AgentOffline,
		Capabilities: req.Capabilities, EnrolledAt: fromNanos(nanos(now))}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var lj string
		var expires int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT labels, expires_at, used_at FROM join_tokens WHERE hash = ?", hashSecret(req.Token)).Scan(&lj, &expires, &used)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("join token is not valid (unknown to this hub): %w", hub.ErrUnauthorized)
		case err != nil:
			return err
		case used.Valid:
			return fmt.Errorf("join token was already used (at %s): tokens are one-time: %w", fromNanos(used.Int64).Format(time.RFC3339), hub.ErrUnauthorized)
		case nanos(now) >= expires:
			return fmt.Errorf("join token is expired (at %s): %w", fromNanos(expires).Format(time.RFC3339), hub.ErrUnauthorized)
		}
		labels := map[string]string{}
		if err := json.Unmarshal([]byte(lj), &labels); err != nil {
			return fmt.Errorf("join token labels: %w", err)
		}
		maps.Copy(labels, req.Labels) // the request wins
		if err := hub.CheckLabels(labels); err != nil {
			return err
		}
		a.Labels = labels
		nl, err := json.Marshal(labels)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents (id, name, kind, labels, capabilities, secret_hash, enrolled_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, a.ID, a.Name, a.Kind, string(nl), string(caps), hashSecret(secret), nanos(now)); err != nil {
			if isUnique(err) {
				return fmt.Errorf("agent name %q is used by another agent (revoke it first): %w", a.Name, hub.ErrConflict)
			}
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE join_tokens SET used_at = ?, used_by = ? WHERE hash = ?", nanos(now), a.ID, hashSecret(req.Token))
		return err
	})
	if err != nil {
		return hub.Agent{}, "", fmt.Errorf("enroll agent %q: %w", req.Name, err)
	}
	return a, secret, nil
}

const agentCols = `id, name, kind, labels, capabilities, online, last_seen, endpoint, observed_generation, enrolled_at, revoked_at`

func scanAgent(row interface{ Scan(...any) error }) (hub.Agent, error) {
	var a hub.Agent
	var labels, caps string
	var online bool
	var lastSeen, revoked sql.NullInt64
	var enrolled int64
	var gen int64
	if err := row.Scan(&a.ID, &a.Name, &a.Kind, &labels, &caps, &online, &lastSeen, &a.Endpoint, &gen, &enrolled, &revoked); err != nil {
		return a, err
	}
	a.ObservedGeneration = uint64(gen)
	if err := json.Unmarshal([]byte(labels), &a.Labels); err != nil {
		return a, fmt.Errorf("agent %s labels: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
		return a, fmt.Errorf("agent %s capabilities: %w", a.ID, err)
	}
	a.LastSeen = fromNullNanos(lastSeen)
	a.RevokedAt = fromNullNanos(revoked)
	a.EnrolledAt = fromNanos(enrolled)
	switch {
	case revoked.Valid:
		a.State = hub.AgentRevoked
	case online:
		a.State = hub.AgentOnline
	default:
		a.State = hub.AgentOffline
	}
	return a, nil
}

// ListAgents implements hub.AgentStore: every agent, revoked ones included,
// ordered by name then id.
func (s *Store) ListAgents(ctx context.Context) ([]hub.Agent, error) {
	var out []hub.Agent
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT "+agentCols+" FROM agents ORDER BY name, id")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanAgent(rows)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	if out == nil {
		out = []hub.Agent{}
	}
	return out, nil
}

func getAgent(ctx context.Context, q querier, id string) (hub.Agent, error) {
	a, err := scanAgent(q.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("agent %q: %w", id, hub.ErrNotFound)
	}
	return a, err
}

// GetAgent implements hub.AgentStore.
func (s *Store) GetAgent(ctx context.Context, id string) (hub.Agent, error) {
	var a hub.Agent
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = getAgent(ctx, tx, id)
		return err
	})
	return a, err
}

// RevokeAgent implements hub.AgentStore. Revoking a revoked agent changes
// nothing and returns it.
func (s *Store) RevokeAgent(ctx context.Context, id string) (hub.Agent, error) {
	var a hub.Agent
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET revoked_at = ?, online = 0 WHERE id = ? AND revoked_at IS NULL", nanos(s.now()), id); err != nil {
			return err
		}
		var err error
		a, err = getAgent(ctx, tx, id)
		return err
	})
	if err != nil {
		return a, fmt.Errorf("revoke agent: %w", err)
	}
	return a, nil
}

// VerifyAgentSecret implements hub.AgentStore. An unknown agent costs the
// same comparison as a known one.
func (s *Store) VerifyAgentSecret(ctx context.Context, id, secret string) (bool, error) {
	var want []byte
	err := s.r.QueryRowContext(ctx, "SELECT secret_hash FROM agents WHERE id = ? AND revoked_at IS NULL", id).Scan(&want)
	found := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("verify agent %q: %w", id, err)
	}
	if !found {
		want = make([]byte, sha256.Size)
	}
	return subtle.ConstantTimeCompare(hashSecret(secret), want) == 1 && found, nil
}

// SetAgentPresence implements hub.AgentStore.
func (s *Store) SetAgentPresence(ctx context.Context, id string, online bool, caps *hub.Capabilities, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if caps != nil {
			if caps.Kind == "" { // keep the kind the agent enrolled with
				c := *caps
				if err := tx.QueryRowContext(ctx, "SELECT kind FROM agents WHERE id = ?", id).Scan(&c.Kind); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				caps = &c
			}
			if caps.FPGA == nil && caps.Kind == hub.KindFPGA {
				// A presence that does not name the card keeps the one the
				// agent reported before (at enrollment or in an earlier
				// presence).
				var stored string
				err := tx.QueryRowContext(ctx, "SELECT capabilities FROM agents WHERE id = ?", id).Scan(&stored)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				var old hub.Capabilities
				if err == nil && json.Unmarshal([]byte(stored), &old) == nil && old.FPGA != nil {
					c := *caps
					c.FPGA = old.FPGA
					caps = &c
				}
			}
			cj, err := json.Marshal(caps)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE agents SET online = ?, last_seen = MAX(COALESCE(last_seen, 0), ?), capabilities = ? WHERE id = ? AND revoked_at IS NULL",
				online, nanos(at), string(cj), id)
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE agents SET online = ?, last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ? AND revoked_at IS NULL",
			online, nanos(at), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("agent %q presence: %w", id, err)
	}
	return nil
}

// RecordAgentReports implements hub.AgentStore.
func (s *Store) RecordAgentReports(ctx context.Context, reports map[string]hub.AgentReport) error {
	if len(reports) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(reports))
	err := s.write(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE agents SET online = 1, last_seen = MAX(COALESCE(last_seen, 0), ?), endpoint = ?, observed_generation = ?
			WHERE id = ? AND revoked_at IS NULL`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			r := reports[id]
			if _, err := st.ExecContext(ctx, nanos(r.At), r.Endpoint, int64(r.ObservedGeneration), id); err != nil {
				return fmt.Errorf("agent %q: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d agent reports: %w", len(reports), err)
	}
	return nil
}
