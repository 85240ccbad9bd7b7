package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

var edgeCaps = hub.Capabilities{Kind: "edge", OS: "linux", Arch: "arm64", CPUs: 4, MemoryBytes: 1 << 30, AgentVersion: "0.1.0"}

func TestJoinTokens(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st.now = func() time.Time { return clock }

	fresh := func(t *testing.T, ttl time.Duration) string {
		t.Helper()
		tok, err := st.CreateJoinToken(ctx, map[string]string{"site": "lab", "tier": "a"}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	used := fresh(t, time.Hour)
	if _, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: used, Name: "first", Capabilities: edgeCaps}); err != nil {
		t.Fatal(err)
	}
	expiring := fresh(t, time.Minute)

	for _, tc := range []struct {
		name    string
		req     hub.EnrollRequest
		advance time.Duration
		class   error
		msg     string
	}{
		{"unknown token", hub.EnrollRequest{Token: "nope", Name: "x", Capabilities: edgeCaps}, 0, hub.ErrUnauthorized, "join token is not valid"},
		{"used token", hub.EnrollRequest{Token: used, Name: "x", Capabilities: edgeCaps}, 0, hub.ErrUnauthorized, "join token was already used"},
		{"expired token", hub.EnrollRequest{Token: expiring, Name: "x", Capabilities: edgeCaps}, time.Minute, hub.ErrUnauthorized, "join token is expired"},
		{"empty token", hub.EnrollRequest{Name: "x", Capabilities: edgeCaps}, 0, hub.ErrInvalid, "token is empty"},
		{"bad name", hub.EnrollRequest{Token: fresh(t, 0), Name: "no spaces", Capabilities: edgeCaps}, 0, hub.ErrInvalid, `agent name "no spaces"`},
		{"bad kind", hub.EnrollRequest{Token: fresh(t, 0), Name: "x", Capabilities: hub.Capabilities{Kind: "toaster"}}, 0, hub.ErrInvalid, `capabilities.kind "toaster"`},
		{"bad label", hub.EnrollRequest{Token: fresh(t, 0), Name: "x", Labels: map[string]string{"": "v"}, Capabilities: edgeCaps}, 0, hub.ErrInvalid, `label key ""`},
		{"name taken", hub.EnrollRequest{Token: fresh(t, 0), Name: "first", Capabilities: edgeCaps}, 0, hub.ErrConflict, `agent name "first" is used`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock = clock.Add(tc.advance)
			_, _, err := st.Enroll(ctx, tc.req)
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.class, tc.msg)
			}
		})
	}
	// A refused enrollment (name taken) leaves its token usable.
	tok := fresh(t, 0)
	if _, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok, Name: "first", Capabilities: edgeCaps}); !errors.Is(err, hub.ErrConflict) {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok, Name: "second", Capabilities: edgeCaps}); err != nil {
		t.Fatalf("token after a refused enrollment: %v", err)
	}
	for _, ttl := range []time.Duration{-time.Second, hub.MaxJoinTokenTTL + time.Second} {
		if _, err := st.CreateJoinToken(ctx, nil, ttl); !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("ttl %s: err = %v, want ErrInvalid", ttl, err)
		}
	}
}

func TestEnrollVerifyRevoke(t *testing.T) {
	ctx := context.Background()
	st, path := openTest(t)
	tok, err := st.CreateJoinToken(ctx, map[string]string{"site": "lab", "tier": "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(tok.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("default expiry in %s, want 1h", d)
	}
	a, secret, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: "Edge_1.x", Labels: map[string]string{"tier": "b", "zone": "z"}, Capabilities: edgeCaps})
	if err != nil {
		t.Fatal(err)
	}
	if !topics.ValidAgentID(a.ID) || !strings.HasPrefix(a.ID, "edge-1-x-") {
		t.Errorf("id %q", a.ID)
	}
	want := map[string]string{"site": "lab", "tier": "b", "zone": "z"}
	if len(a.Labels) != 3 || a.Labels["site"] != "lab" || a.Labels["tier"] != "b" || a.Labels["zone"] != "z" {
		t.Errorf("labels = %v, want %v (request wins)", a.Labels, want)
	}
	got, err := st.GetAgent(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != hub.AgentOffline || got.LastSeen != nil || got.Kind != "edge" || got.Capabilities != edgeCaps || got.Labels["tier"] != "b" {
		t.Errorf("agent = %+v", got)
	}
	for _, tc := range []struct {
		id, secret string
		ok         bool
	}{{a.ID, secret, true}, {a.ID, secret + "x", false}, {a.ID, "", false}, {"other", secret, false}} {
		if ok, err := st.VerifyAgentSecret(ctx, tc.id, tc.secret); err != nil || ok != tc.ok {
			t.Errorf("Verify(%q, %q) = %v, %v; want %v", tc.id, tc.secret, ok, err, tc.ok)
		}
	}

	// Presence and reports.
	t0 := time.Now().UTC()
	caps := edgeCaps
	caps.ONNXRuntimeVersion = "1.22.0"
	if err := st.SetAgentPresence(ctx, a.ID, true, &caps, t0); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordAgentReports(ctx, map[string]hub.AgentReport{a.ID: {ObservedGeneration: 7, Endpoint: "http://10.0.0.7:8000", At: t0.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetAgent(ctx, a.ID)
	if got.State != hub.AgentOnline || got.Capabilities.ONNXRuntimeVersion != "1.22.0" || got.ObservedGeneration != 7 ||
		got.Endpoint != "http://10.0.0.7:8000" || got.LastSeen == nil || !got.LastSeen.Equal(t0.Add(time.Second)) {
		t.Errorf("after presence and report: %+v", got)
	}
	noKind := hub.Capabilities{OS: "linux"}
	if err := st.SetAgentPresence(ctx, a.ID, true, &noKind, t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetAgent(ctx, a.ID); got.Capabilities.Kind != "edge" || got.Capabilities.OS != "linux" {
		t.Errorf("capabilities without a kind: %+v", got.Capabilities)
	}
	if err := st.SetAgentPresence(ctx, a.ID, false, nil, t0); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetAgent(ctx, a.ID)
	if got.State != hub.AgentOffline || !got.LastSeen.Equal(t0.Add(time.Second)) {
		t.Errorf("after offline: %+v (last_seen must not go back)", got)
	}

	// Revocation: refused from then on, idempotent, not undone by presence.
	r, err := st.RevokeAgent(ctx, a.ID)
	if err != nil || r.State != hub.AgentRevoked || r.RevokedAt == nil {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	if ok, _ := st.VerifyAgentSecret(ctx, a.ID, secret); ok {
		t.Error("revoked agent verified")
	}
	if r2, err := st.RevokeAgent(ctx, a.ID); err != nil || !r2.RevokedAt.Equal(*r.RevokedAt) {
		t.Errorf("second revoke: %+v, %v", r2, err)
	}
	_ = st.SetAgentPresence(ctx, a.ID, true, &caps, time.Now())
	_ = st.RecordAgentReports(ctx, map[string]hub.AgentReport{a.ID: {At: time.Now()}})
	if got, _ := st.GetAgent(ctx, a.ID); got.State != hub.AgentRevoked {
		t.Errorf("presence after revoke: state %s", got.State)
	}
	if _, err := st.RevokeAgent(ctx, "missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("revoke missing: %v", err)
	}
	// The name is free again once revoked.
	tok2, _ := st.CreateJoinToken(ctx, nil, time.Hour)
	if _, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok2.Token, Name: "Edge_1.x", Capabilities: edgeCaps}); err != nil {
		t.Errorf("re-enroll under a revoked name: %v", err)
	}
	list, err := st.ListAgents(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}

	// Hash-only storage: neither the token nor the secret is in the
	// database files in clear.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil && suffix == "" {
			t.Fatal(err)
		}
		for _, s := range []string{tok.Token, secret, tok2.Token} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret in clear", path+suffix)
			}
		}
	}
}

// BenchmarkVerifyAgentSecret is the store's cost of one broker CONNECT.
func BenchmarkVerifyAgentSecret(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, Config{Path: b.TempDir() + "/hub.db"}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var id, secret string
	for i := range 1000 {
		tok, err := st.CreateJoinToken(ctx, nil, 0)
		if err != nil {
			b.Fatal(err)
		}
		a, s, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: fmt.Sprintf("agent-%d", i), Capabilities: edgeCaps})
		if err != nil {
			b.Fatal(err)
		}
		id, secret = a.ID, s
	}
	b.ResetTimer()
	for b.Loop() {
		if ok, err := st.VerifyAgentSecret(ctx, id, secret); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
