package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// revoker records the agents it was asked to revoke.
type revoker struct {
	mu  sync.Mutex
	ids []string
	err error
}

func (r *revoker) RevokeAgent(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return r.err
}

const agentsPath = "/api/v1/agents"

func TestAgentEnrollment(t *testing.T) {
	rv := &revoker{}
	e := newEnv(t, api.Config{AgentMQTTURL: "tcp://hub.example:1883", AgentRevoker: rv})

	var tok hub.JoinToken
	e.ok(201, "POST", agentsPath+"/tokens", map[string]any{"labels": map[string]string{"site": "lab", "tier": "a"}, "ttl": "30m"}, &tok)
	if len(tok.Token) < 22 || tok.Labels["site"] != "lab" {
		t.Fatalf("token %+v", tok)
	}
	if d := time.Until(tok.ExpiresAt); d < 29*time.Minute || d > 30*time.Minute {
		t.Errorf("expires in %s, want 30m", d)
	}
	caps := hub.Capabilities{Kind: "edge", OS: "linux", Arch: "amd64", CPUs: 8, MemoryBytes: 16 << 30, ONNXRuntimeVersion: "1.22.0", AgentVersion: "0.1.0"}
	var en hub.Enrollment
	e.ok(201, "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: tok.Token, Name: "edge-1", Labels: map[string]string{"tier": "b"}, Capabilities: caps}, &en)
	if !topics.ValidAgentID(en.AgentID) || len(en.Secret) != 43 || en.MQTTURL != "tcp://hub.example:1883" {
		t.Fatalf("enrollment %+v", en)
	}
	e.fails(401, "unauthorized", "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: tok.Token, Name: "edge-2", Capabilities: caps}, "join token was already used")
	e.fails(401, "unauthorized", "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: "forged", Name: "edge-2", Capabilities: caps}, "join token is not valid")

	var ag hub.Agent
	e.ok(200, "GET", agentsPath+"/"+en.AgentID, nil, &ag)
	if ag.Name != "edge-1" || ag.Kind != "edge" || ag.State != hub.AgentOffline || ag.Capabilities != caps ||
		ag.Labels["site"] != "lab" || ag.Labels["tier"] != "b" || ag.EnrolledAt.IsZero() || ag.LastSeen != nil {
		t.Errorf("agent %+v", ag)
	}
	var list []hub.Agent
	e.ok(200, "GET", agentsPath, nil, &list)
	if len(list) != 1 || list[0].ID != en.AgentID {
		t.Errorf("list %+v", list)
	}
	e.ok(200, "POST", agentsPath+"/"+en.AgentID+"/revoke", nil, &ag)
	if ag.State != hub.AgentRevoked || len(rv.ids) != 1 || rv.ids[0] != en.AgentID {
		t.Errorf("revoked %+v, revoker saw %v", ag, rv.ids)
	}
	e.fails(404, "not_found", "GET", agentsPath+"/nobody", nil, `agent "nobody"`)
	e.fails(404, "not_found", "POST", agentsPath+"/nobody/revoke", nil, `agent "nobody"`)

	// The revoker failing is a 500, and the agent stays revoked.
	var tok2 hub.JoinToken
	e.ok(201, "POST", agentsPath+"/tokens", map[string]any{}, &tok2)
	e.ok(201, "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: tok2.Token, Name: "edge-3", Capabilities: caps}, &en)
	rv.err = errors.New("broker down")
	e.fails(500, "internal", "POST", agentsPath+"/"+en.AgentID+"/revoke", nil, "internal error")
	e.ok(200, "GET", agentsPath+"/"+en.AgentID, nil, &ag)
	if ag.State != hub.AgentRevoked {
		t.Errorf("state after a failed disconnect: %s", ag.State)
	}
}

func TestAgentBadRequests(t *testing.T) {
	e := newEnv(t, api.Config{AgentMQTTURL: "tcp://127.0.0.1:1883"})
	var tok hub.JoinToken
	e.ok(201, "POST", agentsPath+"/tokens", map[string]any{}, &tok)
	if d := time.Until(tok.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("default ttl: expires in %s", d)
	}
	caps := hub.Capabilities{Kind: "container"}
	for _, tc := range []struct {
		name, path string
		body       any
		contains   []string
	}{
		{"ttl not a duration", "/tokens", map[string]any{"ttl": "tomorrow"}, []string{`ttl "tomorrow"`, "expected a duration"}},
		{"ttl too long", "/tokens", map[string]any{"ttl": "169h"}, []string{`ttl "169h"`, "at most 168h0m0s"}},
		{"ttl negative", "/tokens", map[string]any{"ttl": "-1m"}, []string{`ttl "-1m"`}},
		{"bad label key", "/tokens", map[string]any{"labels": map[string]string{"a b": "c"}}, []string{`label key "a b"`}},
		{"unknown field", "/tokens", map[string]any{"labelz": map[string]string{}}, []string{"labelz"}},
		{"empty token", "/enroll", hub.EnrollRequest{Name: "x", Capabilities: caps}, []string{"token is empty"}},
		{"bad name", "/enroll", hub.EnrollRequest{Token: tok.Token, Name: "-x", Capabilities: caps}, []string{`agent name "-x"`}},
		{"no kind", "/enroll", hub.EnrollRequest{Token: tok.Token, Name: "x"}, []string{`capabilities.kind ""`, "edge, container or fpga"}},
		{"not JSON", "/enroll", "{", []string{"malformed JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.fails(400, "invalid", "POST", agentsPath+tc.path, tc.body, tc.contains...)
		})
	}
	// The refused enrollments did not consume the token.
	var en hub.Enrollment
	e.t = t
	e.ok(201, "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: tok.Token, Name: "x", Capabilities: caps}, &en)
	e.fails(405, "method_not_allowed", "DELETE", agentsPath+"/"+en.AgentID, nil, "allowed: GET")
}

func TestAgentExpiredToken(t *testing.T) {
	e := newEnv(t, api.Config{AgentMQTTURL: "tcp://127.0.0.1:1883"})
	var tok hub.JoinToken
	e.ok(201, "POST", agentsPath+"/tokens", map[string]any{"ttl": "1ns"}, &tok)
	e.fails(401, "unauthorized", "POST", agentsPath+"/enroll", hub.EnrollRequest{Token: tok.Token, Name: "late", Capabilities: hub.Capabilities{Kind: "fpga"}}, "join token is expired")
}

// FuzzEnroll: any enrollment body (the route needs no login) is answered
// 201, 400, 401 or 409 with a JSON error, never 500; a valid token is
// offered so bodies that reach the store are exercised too.
func FuzzEnroll(f *testing.F) {
	e := newEnv(f, api.Config{AgentMQTTURL: "tcp://127.0.0.1:1883"})
	var tok hub.JoinToken
	e.ok(201, "POST", agentsPath+"/tokens", map[string]any{"ttl": "168h"}, &tok)
	f.Add(`{"token":"` + tok.Token + `","name":"a","capabilities":{"kind":"edge"}}`)
	f.Add(`{"token":"x","name":"a","labels":{"k":"v"},"capabilities":{"kind":"fpga","cpus":-1}}`)
	f.Add(`{"token":"` + tok.Token + `","name":"a\u0000","capabilities":{"kind":"edge","memory_bytes":1e40}}`)
	f.Add(`[]`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, body string) {
		te := *e
		te.t = t
		code, out := te.do("POST", agentsPath+"/enroll", body)
		switch code {
		case 201:
			var en hub.Enrollment
			if err := json.Unmarshal(out, &en); err != nil || !topics.ValidAgentID(en.AgentID) || en.Secret == "" {
				t.Fatalf("201 with %s", out)
			}
		case 400, 401, 409:
			var eb hub.ErrorBody
			if err := json.Unmarshal(out, &eb); err != nil || eb.Error == "" {
				t.Fatalf("%d with %s", code, out)
			}
		default:
			t.Fatalf("status %d: %s", code, out)
		}
	})
}
