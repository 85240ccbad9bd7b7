package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

func openEventStore(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func enrollAgent(t *testing.T, st hub.AgentStore, name string) string {
	t.Helper()
	ctx := context.Background()
	tok, err := st.CreateJoinToken(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: name, Capabilities: hub.Capabilities{Kind: "edge"}})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func kinds(t *testing.T, st hub.EventStore, q hub.EventQuery) []string {
	t.Helper()
	evs, err := st.ListEvents(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func equalStrings(a, b []string) bool {
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

var (
	online  = &agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE, HeartbeatSeconds: 1}
	offline = &agentv1.Presence{Status: agentv1.Presence_STATUS_OFFLINE}
)

func TestPresenceEventsOnTransitionsOnly(t *testing.T) {
	st, _ := openEventStore(t)
	ctx := context.Background()
	id := enrollAgent(t, st, "edge-1")
	p := newPresence(st, time.Hour, slog.New(slog.DiscardHandler))

	p.Presence(ctx, id, online)
	p.Presence(ctx, id, online) // a reconnect while online: no transition
	for range 5 {
		p.Reported(ctx, id, &agentv1.ReportedState{ObservedGeneration: 1})
	}
	p.flush(ctx)
	p.Presence(ctx, id, offline)
	p.Presence(ctx, id, offline) // the retained will seen again
	p.Presence(ctx, "unknown-agent", online)
	want := []string{hub.EventAgentOnline, hub.EventAgentOffline}
	if got := kinds(t, st, hub.EventQuery{}); !equalStrings(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	// Reports from an agent marked offline bring it back online.
	p.Reported(ctx, id, &agentv1.ReportedState{ObservedGeneration: 1})
	p.Reported(ctx, id, &agentv1.ReportedState{ObservedGeneration: 1})
	want = append(want, hub.EventAgentOnline)
	if got := kinds(t, st, hub.EventQuery{Agent: id}); !equalStrings(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPresenceMissedHeartbeatsEvent(t *testing.T) {
	st, _ := openEventStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	id := enrollAgent(t, st, "edge-2")
	p := newPresence(st, time.Millisecond, slog.New(slog.DiscardHandler))
	c := &clock{t: time.Now()}
	p.now = c.now
	p.Presence(ctx, id, online)
	var wg sync.WaitGroup
	wg.Go(func() { p.run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	c.add(MissedHeartbeats*time.Second + time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := st.ListEvents(ctx, hub.EventQuery{Kinds: []string{hub.EventAgentOffline}})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 {
			if evs[0].Agent != id || evs[0].Attrs["reason"] != "missed_heartbeats" {
				t.Fatalf("offline event = %+v", evs[0])
			}
			break
		}
		if len(evs) > 1 || time.Now().After(deadline) {
			t.Fatalf("offline events = %+v, want one", evs)
		}
		time.Sleep(time.Millisecond)
	}
	if a, err := st.GetAgent(ctx, id); err != nil || a.State != hub.AgentOffline {
		t.Fatalf("agent = %+v, %v; want offline", a, err)
	}
}

func report(states ...*agentv1.DeploymentStatus) *agentv1.ReportedState {
	return &agentv1.ReportedState{Deployments: states, TimeUnixNano: time.Now().UnixNano()}
}

func dstate(name string, s agentv1.DeploymentStatus_State, version uint32, errText string) *agentv1.DeploymentStatus {
	return &agentv1.DeploymentStatus{Name: name, State: s, ModelVersion: version, Error: errText}
}

func TestDeploymentEvents(t *testing.T) {
	st, path := openEventStore(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	d := newDeploymentEvents(st, log)
	const (
		serving = agentv1.DeploymentStatus_STATE_SERVING
		failed  = agentv1.DeploymentStatus_STATE_FAILED
		loading = agentv1.DeploymentStatus_STATE_LOADING
		rolled  = agentv1.DeploymentStatus_STATE_ROLLED_BACK
	)
	d.Reported(ctx, "a1", report(dstate("d", serving, 1, ""), dstate("e", serving, 1, "")))
	d.Reported(ctx, "a1", report(dstate("d", failed, 1, "load v2: bad opset"), dstate("e", serving, 1, "")))
	d.Reported(ctx, "a1", report(dstate("d", failed, 1, "load v2: bad opset"), dstate("e", serving, 1, ""))) // heartbeat
	d.Reported(ctx, "a2", report(dstate("d", failed, 1, "disk full")))
	d.Reported(ctx, "a1", report(dstate("d", loading, 1, ""), dstate("e", serving, 1, "")))
	d.Reported(ctx, "a1", report(dstate("d", failed, 1, "load v3: bad input"), dstate("e", serving, 1, "")))
	rb := dstate("e", rolled, 1, "error_rate 0.2 > 0.05")
	rb.RolledBackVersion = 2
	d.Reported(ctx, "a1", report(dstate("d", failed, 1, "load v3: bad input"), rb))
	want := []string{hub.EventDeploymentFailed, hub.EventDeploymentFailed, hub.EventDeploymentFailed, hub.EventDeploymentRolledBack}
	evs, err := st.ListEvents(ctx, hub.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind)
	}
	if !equalStrings(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if e := evs[0]; e.Agent != "a1" || e.Deployment != "d" || e.Attrs["error"] != "load v2: bad opset" || e.Message != "deployment d failed on agent a1: load v2: bad opset" {
		t.Errorf("first failure = %+v", e)
	}
	if e := evs[3]; e.Attrs["rolled_back_version"] != "2" || e.Attrs["model_version"] != "1" || e.Deployment != "e" {
		t.Errorf("rollback = %+v", e)
	}

	// A restarted hub (new observer, reopened store) does not record the
	// same failure again, but records a different one.
	st.Close()
	st2, err := sqlite.Open(ctx, sqlite.Config{Path: path}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	d2 := newDeploymentEvents(st2, log)
	d2.Reported(ctx, "a1", report(dstate("d", failed, 1, "load v3: bad input"), rb))
	d2.Reported(ctx, "a2", report(dstate("d", failed, 1, "disk still full")))
	got = kinds(t, st2, hub.EventQuery{After: evs[3].ID})
	if !equalStrings(got, []string{hub.EventDeploymentFailed}) {
		t.Fatalf("after restart: events = %v, want one new failure", got)
	}
}

func TestConfigWebhookAndRetention(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad url", func(c *Config) { c.WebhookURL = "ftp://x" }, "webhook_url"},
		{"no host", func(c *Config) { c.WebhookURL = "http://" }, "webhook_url"},
		{"secret alone", func(c *Config) { c.WebhookSecret = "s" }, "webhook_secret"},
		{"negative retention", func(c *Config) { c.EventRetention = -time.Hour }, "event_retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	c := DefaultConfig()
	c.WebhookURL, c.WebhookSecret = "https://example.invalid/hook", "s"
	if err := c.Validate(); err != nil {
		t.Errorf("valid webhook: %v", err)
	}
}
