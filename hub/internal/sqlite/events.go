package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/atelier-ml/atelier/hub"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// migEvents creates the event log. AUTOINCREMENT keeps IDs increasing and
// never reused, even once retention has emptied the table, so an event ID
// is a safe cursor for followers and webhooks. event_cursors holds each
// consumer's acknowledged cursor.
const migEvents = `
CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	time       INTEGER NOT NULL,
	kind       TEXT NOT NULL,
	agent      TEXT NOT NULL DEFAULT '',
	deployment TEXT NOT NULL DEFAULT '',
	message    TEXT NOT NULL DEFAULT '',
	attrs      TEXT
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_agent ON events (agent, id) WHERE agent != '';
CREATE INDEX events_deployment ON events (deployment, id) WHERE deployment != '';
CREATE TABLE event_cursors (
	consumer TEXT PRIMARY KEY,
	after    INTEGER NOT NULL
) WITHOUT ROWID;
`

// Limits of one event.
const (
	maxEventKind    = 64
	maxEventName    = 256 // agent and deployment
	maxEventMessage = 4096
	maxEventAttrs   = 32
	maxEventAttr    = 1024 // one attribute key or value
	// DefaultEventLimit is what ListEvents returns when Limit is 0;
	// MaxEventLimit caps Limit.
	DefaultEventLimit = 1000
	MaxEventLimit     = 10_000
)

// checkEvent checks e against the limits; the error names the field.
func checkEvent(e *hub.Event) error {
	if e.Kind == "" || len(e.Kind) > maxEventKind || strings.Trim(e.Kind, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Errorf("event kind %q: expected 1 to %d of [a-z0-9_]: %w", e.Kind, maxEventKind, hub.ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"agent", e.Agent}, {"deployment", e.Deployment}} {
		if len(f.v) > maxEventName || !utf8.ValidString(f.v) {
			return fmt.Errorf("event %s: expected valid UTF-8 of at most %d bytes, got %d bytes: %w", f.name, maxEventName, len(f.v), hub.ErrInvalid)
		}
	}
	if len(e.Message) > maxEventMessage || !utf8.ValidString(e.Message) {
		return fmt.Errorf("event message: expected valid UTF-8 of at most %d bytes, got %d bytes: %w", maxEventMessage, len(e.Message), hub.ErrInvalid)
	}
	if len(e.Attrs) > maxEventAttrs {
		return fmt.Errorf("event attrs: %d attributes, expected at most %d: %w", len(e.Attrs), maxEventAttrs, hub.ErrInvalid)
	}
	for k, v := range e.Attrs {
		if k == "" || len(k) > maxEventAttr || len(v) > maxEventAttr || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("event attr %q: expected a non-empty key and a value of valid UTF-8, each at most %d bytes: %w", k, maxEventAttr, hub.ErrInvalid)
		}
	}
	return nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, e *hub.Event) error {
	var attrs sql.NullString
	if len(e.Attrs) > 0 {
		b, err := json.Marshal(e.Attrs)
		if err != nil {
			return err
		}
		attrs = sql.NullString{String: string(b), Valid: true}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO events (time, kind, agent, deployment, message, attrs) VALUES (?, ?, ?, ?, ?, ?)`,
		nanos(e.Time), e.Kind, e.Agent, e.Deployment, e.Message, attrs)
	if err != nil {
		return err
	}
	e.ID, err = res.LastInsertId()
	return err
}

// agentEventKind reports whether the hub records AgentEvents of kind k;
// others are logged and dropped.
func agentEventKind(k string) bool {
	switch k {
	case hub.EventRollback, hub.EventDeviceFault, hub.EventDeviceRecovered, hub.EventCPUFallback:
		return true
	}
	return false
}

// ingestAgentEventsTx records the events of one new (not duplicate)
// telemetry batch of agentID, inside IngestTelemetry's transaction. An
// event the hub cannot record as sent (unknown kind, over a limit) is
// logged and skipped, or truncated, so that bad events never cost the
// batch's telemetry; only a database error is returned.
func (s *Store) ingestAgentEventsTx(ctx context.Context, tx *sql.Tx, agentID string, b *agentv1.TelemetryBatch) error {
	for i, ae := range b.GetEvents() {
		if !agentEventKind(ae.GetKind()) {
			s.log.Warn("agent event of unknown kind dropped", "agent", agentID, "seq", b.GetSeq(), "index", i, "kind", ae.GetKind(),
				"expected", "rollback, device_fault, device_recovered or cpu_fallback")
			continue
		}
		e := hub.Event{Kind: ae.GetKind(), Agent: agentID, Deployment: truncUTF8(ae.GetDeployment(), maxEventName),
			Message: truncUTF8(ae.GetMessage(), maxEventMessage)}
		if t := ae.GetTimeUnixNano(); t > 0 {
			e.Time = fromNanos(t)
		} else {
			e.Time = s.now().UTC()
		}
		if len(ae.GetAttrs()) > 0 {
			e.Attrs = map[string]string{}
			for k, v := range ae.GetAttrs() {
				if len(e.Attrs) == maxEventAttrs {
					s.log.Warn("agent event attributes beyond the limit dropped", "agent", agentID, "seq", b.GetSeq(), "kind", e.Kind, "limit", maxEventAttrs)
					break
				}
				if k = truncUTF8(k, maxEventAttr); k != "" {
					e.Attrs[k] = truncUTF8(v, maxEventAttr)
				}
			}
		}
		if err := insertEvent(ctx, tx, &e); err != nil {
			return fmt.Errorf("agent %q telemetry seq %d: event %d: %w", agentID, b.GetSeq(), i, err)
		}
	}
	// An accelerator's faults and CPU fallbacks in the interval become one
	// event each per deployment (the agent reports them as counts).
	for _, d := range b.GetDeployments() {
		for _, f := range []struct {
			kind, what string
			n          uint64
		}{
			{hub.EventDeviceFault, "device faults", d.GetDeviceFaults()},
			{hub.EventCPUFallback, "requests scored on the CPU while the device was down", d.GetCpuFallbacks()},
		} {
			if f.n == 0 {
				continue
			}
			e := hub.Event{Kind: f.kind, Agent: agentID, Deployment: truncUTF8(d.GetName(), maxEventName),
				Message: fmt.Sprintf("%d %s (backend now %q)", f.n, f.what, d.GetBackend()),
				Time:    fromNanos(b.GetEndUnixNano()),
				Attrs:   map[string]string{"count": strconv.FormatUint(f.n, 10), "model_version": strconv.FormatUint(uint64(d.GetModelVersion()), 10)}}
			if b.GetEndUnixNano() <= 0 {
				e.Time = s.now().UTC()
			}
			if err := insertEvent(ctx, tx, &e); err != nil {
				return fmt.Errorf("agent %q telemetry seq %d: %s of %q: %w", agentID, b.GetSeq(), f.kind, d.GetName(), err)
			}
		}
	}
	return nil
}

// truncUTF8 cuts s to at most n bytes on a rune boundary and replaces
// invalid UTF-8.
func truncUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// AddEvent implements hub.EventStore.
func (s *Store) AddEvent(ctx context.Context, e hub.Event) (hub.Event, error) {
	if err := checkEvent(&e); err != nil {
		return hub.Event{}, fmt.Errorf("add event: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	e.ID = 0
	if len(e.Attrs) == 0 {
		e.Attrs = nil
	}
	if err := s.write(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &e) }); err != nil {
		return hub.Event{}, fmt.Errorf("add event %s: %w", e.Kind, err)
	}
	e.Time = fromNanos(nanos(e.Time))
	return e, nil
}

// ListEvents implements hub.EventStore. Limit 0 takes DefaultEventLimit;
// a Limit above MaxEventLimit or a negative one is ErrInvalid.
func (s *Store) ListEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error) {
	if q.Limit < 0 || q.Limit > MaxEventLimit {
		return nil, fmt.Errorf("list events: limit %d: expected 0 to %d: %w", q.Limit, MaxEventLimit, hub.ErrInvalid)
	}
	if q.After < 0 {
		return nil, fmt.Errorf("list events: after %d: expected an event id >= 0: %w", q.After, hub.ErrInvalid)
	}
	if q.Limit == 0 {
		q.Limit = DefaultEventLimit
	}
	var (
		cond = []string{"id > ?"}
		args = []any{q.After}
	)
	if len(q.Kinds) > 0 {
		kinds := slices.Compact(slices.Sorted(slices.Values(q.Kinds)))
		cond = append(cond, "kind IN (?"+strings.Repeat(", ?", len(kinds)-1)+")")
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	if q.Agent != "" {
		cond = append(cond, "agent = ?")
		args = append(args, q.Agent)
	}
	if q.Deployment != "" {
		cond = append(cond, "deployment = ?")
		args = append(args, q.Deployment)
	}
	if !q.Since.IsZero() {
		cond = append(cond, "time >= ?")
		args = append(args, nanos(q.Since))
	}
	args = append(args, q.Limit)
	var out []hub.Event
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, time, kind, agent, deployment, message, attrs FROM events WHERE `+
			strings.Join(cond, " AND ")+` ORDER BY id LIMIT ?`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e     hub.Event
				t     int64
				attrs sql.NullString
			)
			if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Agent, &e.Deployment, &e.Message, &attrs); err != nil {
				return err
			}
			e.Time = fromNanos(t)
			if attrs.Valid && attrs.String != "" {
				if err := json.Unmarshal([]byte(attrs.String), &e.Attrs); err != nil {
					return fmt.Errorf("event %d: attrs: %w", e.ID, err)
				}
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// PruneEvents implements hub.EventStore.
func (s *Store) PruneEvents(ctx context.Context, now time.Time, r hub.EventRetention) (int64, error) {
	if r.MaxAge < 0 || r.MaxCount < 0 {
		return 0, fmt.Errorf("prune events: retention %+v: expected durations and counts >= 0: %w", r, hub.ErrInvalid)
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if r.MaxAge > 0 {
			res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE time < ?`, nanos(now.Add(-r.MaxAge)))
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		if r.MaxCount > 0 {
			res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)`, r.MaxCount)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return n, nil
}

// EventCursor implements hub.EventStore.
func (s *Store) EventCursor(ctx context.Context, consumer string) (int64, error) {
	var after int64
	err := s.r.QueryRowContext(ctx, `SELECT after FROM event_cursors WHERE consumer = ?`, consumer).Scan(&after)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("event cursor %q: %w", consumer, err)
	}
	return after, nil
}

// SetEventCursor implements hub.EventStore.
func (s *Store) SetEventCursor(ctx context.Context, consumer string, after int64) error {
	if consumer == "" || after < 0 {
		return fmt.Errorf("set event cursor %q to %d: expected a consumer name and a cursor >= 0: %w", consumer, after, hub.ErrInvalid)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO event_cursors (consumer, after) VALUES (?, ?)
			ON CONFLICT (consumer) DO UPDATE SET after = excluded.after`, consumer, after)
		return err
	})
	if err != nil {
		return fmt.Errorf("set event cursor %q: %w", consumer, err)
	}
	return nil
}
