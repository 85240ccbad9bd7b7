package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

func TestEventsAddAndQuery(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []hub.Event{
		{Time: t0, Kind: hub.EventAgentOnline, Agent: "a1", Message: "online"},
		{Time: t0.Add(time.Minute), Kind: hub.EventDeploymentFailed, Agent: "a1", Deployment: "d1", Message: "load failed", Attrs: map[string]string{"error": "bad model"}},
		{Time: t0.Add(2 * time.Minute), Kind: hub.EventAgentOffline, Agent: "a2", Message: "offline"},
		{Time: t0.Add(3 * time.Minute), Kind: hub.EventDriftDetected, Deployment: "d1", Message: "psi 0.3"},
	}
	var last int64
	for i, e := range in {
		got, err := st.AddEvent(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID <= last {
			t.Fatalf("event %d: id %d not above %d", i, got.ID, last)
		}
		last = got.ID
		in[i].ID = got.ID
	}
	ids := func(es []hub.Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    hub.EventQuery
		want []int64
	}{
		{"all", hub.EventQuery{}, []int64{in[0].ID, in[1].ID, in[2].ID, in[3].ID}},
		{"after", hub.EventQuery{After: in[1].ID}, []int64{in[2].ID, in[3].ID}},
		{"kinds", hub.EventQuery{Kinds: []string{hub.EventAgentOffline, hub.EventAgentOnline, hub.EventAgentOnline}}, []int64{in[0].ID, in[2].ID}},
		{"agent", hub.EventQuery{Agent: "a1"}, []int64{in[0].ID, in[1].ID}},
		{"deployment", hub.EventQuery{Deployment: "d1"}, []int64{in[1].ID, in[3].ID}},
		{"since", hub.EventQuery{Since: t0.Add(90 * time.Second)}, []int64{in[2].ID, in[3].ID}},
		{"limit", hub.EventQuery{Limit: 3, After: in[0].ID}, []int64{in[1].ID, in[2].ID, in[3].ID}},
		{"limit-cut", hub.EventQuery{Limit: 1}, []int64{in[0].ID}},
		{"none", hub.EventQuery{Agent: "nobody"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.ListEvents(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !equalInts(g, tc.want) {
				t.Errorf("ids = %v, want %v", g, tc.want)
			}
		})
	}
	got, err := st.ListEvents(ctx, hub.EventQuery{Deployment: "d1", Kinds: []string{hub.EventDeploymentFailed}})
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	e := got[0]
	if !e.Time.Equal(t0.Add(time.Minute)) || e.Agent != "a1" || e.Message != "load failed" || e.Attrs["error"] != "bad model" || len(e.Attrs) != 1 {
		t.Errorf("round trip = %+v", e)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAddEventSetsTime(t *testing.T) {
	st, _ := openTest(t)
	before := time.Now().Add(-time.Second)
	e, err := st.AddEvent(context.Background(), hub.Event{Kind: hub.EventAgentOnline, Agent: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Time.Before(before) || e.Time.Location() != time.UTC {
		t.Errorf("time = %v, want now in UTC", e.Time)
	}
}

func TestAddEventInvalid(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	if _, err := st.AddEvent(ctx, hub.Event{Kind: hub.EventAgentOnline, Agent: "keep"}); err != nil {
		t.Fatal(err)
	}
	big := map[string]string{}
	for i := range maxEventAttrs + 1 {
		big[strings.Repeat("k", i+1)] = "v"
	}
	for _, tc := range []struct {
		name, want string
		e          hub.Event
	}{
		{"no kind", "event kind", hub.Event{}},
		{"bad kind", "event kind \"Agent Online\"", hub.Event{Kind: "Agent Online"}},
		{"long agent", "event agent", hub.Event{Kind: "x", Agent: strings.Repeat("a", maxEventName+1)}},
		{"bad utf8", "event deployment", hub.Event{Kind: "x", Deployment: "\xff"}},
		{"long message", "event message", hub.Event{Kind: "x", Message: strings.Repeat("m", maxEventMessage+1)}},
		{"many attrs", "event attrs: 33 attributes", hub.Event{Kind: "x", Attrs: big}},
		{"empty attr key", "event attr \"\"", hub.Event{Kind: "x", Attrs: map[string]string{"": "v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.AddEvent(ctx, tc.e)
			if !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	got, err := st.ListEvents(ctx, hub.EventQuery{})
	if err != nil || len(got) != 1 || got[0].Agent != "keep" {
		t.Errorf("after invalid adds: %v, %v; want the one stored event", got, err)
	}
	for _, q := range []hub.EventQuery{{Limit: -1}, {Limit: MaxEventLimit + 1}, {After: -1}} {
		if _, err := st.ListEvents(ctx, q); !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("ListEvents(%+v) err = %v, want ErrInvalid", q, err)
		}
	}
}

func TestIngestAgentEvents(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b := &agentv1.TelemetryBatch{Seq: 7, Events: []*agentv1.AgentEvent{
		{Kind: hub.EventRollback, Deployment: "d", Message: "error_rate 0.2 > 0.05", TimeUnixNano: at.UnixNano(), Attrs: map[string]string{"rolled_back_version": "3"}},
		{Kind: "reboot", Message: "unknown kinds are dropped"},
		{Kind: hub.EventDeviceFault, Deployment: "d", Message: strings.Repeat("é", maxEventMessage)},
		{Kind: hub.EventCPUFallback, Deployment: "d"},
	}}
	err := st.write(ctx, func(tx *sql.Tx) error { return st.ingestAgentEventsTx(ctx, tx, "ag", b) })
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.ListEvents(ctx, hub.EventQuery{Agent: "ag"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3: %+v", len(got), got)
	}
	if g := got[0]; g.Kind != hub.EventRollback || g.Deployment != "d" || !g.Time.Equal(at) || g.Attrs["rolled_back_version"] != "3" || g.Message != "error_rate 0.2 > 0.05" {
		t.Errorf("rollback = %+v", g)
	}
	if g := got[1]; g.Kind != hub.EventDeviceFault || len(g.Message) > maxEventMessage || !strings.HasPrefix(g.Message, "éé") || strings.ContainsRune(g.Message, '\uFFFD') {
		t.Errorf("device fault message not truncated on a rune boundary: %d bytes", len(g.Message))
	}
	if g := got[2]; g.Kind != hub.EventCPUFallback || g.Time.IsZero() {
		t.Errorf("cpu fallback = %+v", g)
	}
	// Rolled back with the transaction, the events are not kept.
	_ = st.write(ctx, func(tx *sql.Tx) error {
		if err := st.ingestAgentEventsTx(ctx, tx, "rolled", b); err != nil {
			return err
		}
		return errors.New("fail the batch")
	})
	if got, _ := st.ListEvents(ctx, hub.EventQuery{Agent: "rolled"}); len(got) != 0 {
		t.Errorf("events of a rolled-back transaction kept: %+v", got)
	}
}

func TestPruneEvents(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		// Events 1..10, one a day, the newest yesterday.
		if _, err := st.AddEvent(ctx, hub.Event{Time: now.Add(-time.Duration(10-i) * 24 * time.Hour), Kind: hub.EventAgentOnline, Agent: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.PruneEvents(ctx, now, hub.EventRetention{MaxAge: 7*24*time.Hour + time.Hour})
	if err != nil || n != 3 {
		t.Fatalf("prune by age removed %d, %v; want 3", n, err)
	}
	n, err = st.PruneEvents(ctx, now, hub.EventRetention{MaxCount: 4})
	if err != nil || n != 3 {
		t.Fatalf("prune by count removed %d, %v; want 3", n, err)
	}
	got, _ := st.ListEvents(ctx, hub.EventQuery{})
	if len(got) != 4 || got[0].ID != 7 || got[3].ID != 10 {
		t.Fatalf("left %+v, want ids 7..10", got)
	}
	// Emptied, the log still never reuses an id.
	if n, err := st.PruneEvents(ctx, now.Add(365*24*time.Hour), hub.EventRetention{MaxAge: time.Hour}); err != nil || n != 4 {
		t.Fatalf("prune all removed %d, %v", n, err)
	}
	e, err := st.AddEvent(ctx, hub.Event{Kind: hub.EventAgentOffline})
	if err != nil || e.ID != 11 {
		t.Errorf("id after emptying = %d, %v; want 11", e.ID, err)
	}
	if _, err := st.PruneEvents(ctx, now, hub.EventRetention{MaxCount: -1}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("negative retention: err = %v", err)
	}
}

func TestEventCursorSurvivesReopen(t *testing.T) {
	st, path := openTest(t)
	ctx := context.Background()
	if c, err := st.EventCursor(ctx, "webhook"); err != nil || c != 0 {
		t.Fatalf("unset cursor = %d, %v", c, err)
	}
	if err := st.SetEventCursor(ctx, "webhook", 5); err != nil {
		t.Fatal(err)
	}
	if err := st.SetEventCursor(ctx, "webhook", 9); err != nil {
		t.Fatal(err)
	}
	if err := st.SetEventCursor(ctx, "", 1); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("empty consumer: err = %v", err)
	}
	st.Close()
	st2, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if c, err := st2.EventCursor(ctx, "webhook"); err != nil || c != 9 {
		t.Errorf("cursor after reopen = %d, %v; want 9", c, err)
	}
}

// TestIngestTelemetryEventsOnce sends a batch with agent events through
// IngestTelemetry twice (an agent retry): its events are recorded once.
func TestIngestTelemetryEventsOnce(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	now := time.Now()
	batch := func() *agentv1.TelemetryBatch {
		return &agentv1.TelemetryBatch{Seq: 1, StartUnixNano: now.Add(-time.Second).UnixNano(), EndUnixNano: now.UnixNano(),
			Events: []*agentv1.AgentEvent{{Kind: hub.EventDeviceFault, Deployment: "d", Message: "dma timeout", TimeUnixNano: now.UnixNano()}}}
	}
	for i := range 2 {
		res, err := st.IngestTelemetry(ctx, []hub.TelemetryUpload{{Agent: "fpga-1", Batches: []*agentv1.TelemetryBatch{batch()}}})
		if err != nil {
			t.Fatalf("ingest %d: %v", i, err)
		}
		if res.Stored+res.Duplicates != 1 || res.Stored != 1-i {
			t.Fatalf("ingest %d: %+v", i, res)
		}
	}
	got, err := st.ListEvents(ctx, hub.EventQuery{Agent: "fpga-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Kind != hub.EventDeviceFault || got[0].Message != "dma timeout" {
		t.Fatalf("events = %+v, want the one device_fault", got)
	}
}

// BenchmarkAddEvent measures one durable event write (a transaction with
// a full fsync each).
func BenchmarkAddEvent(b *testing.B) {
	st := openBench(b)
	ctx := context.Background()
	e := hub.Event{Kind: hub.EventAgentOffline, Agent: "agent-0001", Message: "agent missed its heartbeats", Attrs: map[string]string{"reason": "missed_heartbeats"}}
	for b.Loop() {
		if _, err := st.AddEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListEventsFollow measures a follower's poll: one page after a
// cursor, filtered by agent, over a log of 100,000 events.
func BenchmarkListEventsFollow(b *testing.B) {
	st := openBench(b)
	ctx := context.Background()
	err := st.write(ctx, func(tx *sql.Tx) error {
		for i := range 100_000 {
			e := hub.Event{Time: time.Now(), Kind: hub.EventAgentOnline, Agent: fmt.Sprintf("agent-%04d", i%1000)}
			if err := insertEvent(ctx, tx, &e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := st.ListEvents(ctx, hub.EventQuery{After: 99_000, Agent: "agent-0007"}); err != nil {
			b.Fatal(err)
		}
	}
}

func openBench(b *testing.B) *Store {
	b.Helper()
	st, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// TestDeviceFiguresBecomeEvents: an FPGA agent's fault and fallback counts
// in a batch are recorded as one event each per deployment; zero counts
// record nothing.
func TestDeviceFiguresBecomeEvents(t *testing.T) {
	st, _ := openTest(t)
	ctx := context.Background()
	end := time.Date(2026, 3, 1, 0, 0, 10, 0, time.UTC)
	b := &agentv1.TelemetryBatch{Seq: 1, EndUnixNano: end.UnixNano(), Deployments: []*agentv1.DeploymentTelemetry{
		{Name: "digits", ModelVersion: 2, Backend: "cpu-fallback", DeviceFaults: 3, CpuFallbacks: 40},
		{Name: "calm", ModelVersion: 1, Backend: "fpga"},
	}}
	if err := st.write(ctx, func(tx *sql.Tx) error { return st.ingestAgentEventsTx(ctx, tx, "fpga-1", b) }); err != nil {
		t.Fatal(err)
	}
	got, err := st.ListEvents(ctx, hub.EventQuery{Agent: "fpga-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want a fault and a fallback: %+v", len(got), got)
	}
	if g := got[0]; g.Kind != hub.EventDeviceFault || g.Deployment != "digits" || g.Attrs["count"] != "3" || !g.Time.Equal(end) || !strings.Contains(g.Message, "3 device faults") {
		t.Errorf("fault event = %+v", g)
	}
	if g := got[1]; g.Kind != hub.EventCPUFallback || g.Attrs["count"] != "40" || g.Attrs["model_version"] != "2" {
		t.Errorf("fallback event = %+v", g)
	}
}
