package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/rollout"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// pushRecorder is a rollout.Pusher that keeps the last state per agent.
type pushRecorder struct {
	mu   sync.Mutex
	last map[string]*agentv1.DesiredState
}

func (p *pushRecorder) SetDesired(_ context.Context, agent string, d *agentv1.DesiredState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[agent] = d
	return nil
}

func (p *pushRecorder) RemoveAgent(context.Context, string) error { return nil }

func (p *pushRecorder) ModelRef(_ context.Context, name string, version uint32, sha string) (*agentv1.ModelRef, error) {
	return &agentv1.ModelRef{Name: name, Version: version, Sha256: sha, ChunkSize: 1 << 18}, nil
}

// newDeployEnv is newEnv with a real rollout (over a recording pusher)
// wired into the API.
func newDeployEnv(t *testing.T) (*env, *rollout.Rollout, *pushRecorder) {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "hub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bl, err := blobfs.Open(filepath.Join(dir, "blobs"), log)
	if err != nil {
		t.Fatal(err)
	}
	p := &pushRecorder{last: map[string]*agentv1.DesiredState{}}
	ro := rollout.New(rollout.Config{}, st, log)
	a := api.New(api.Config{AgentMQTTURL: "tcp://127.0.0.1:1883", Rollout: ro}, st, bl, log)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(a.Close)
	return &env{t: t, url: srv.URL, api: a}, ro, p
}

// enrollVia enrolls an agent over the API and returns its id.
func (e *env) enrollVia(name string, labels map[string]string) string {
	e.t.Helper()
	var tok hub.JoinToken
	e.ok(201, "POST", "/api/v1/agents/tokens", map[string]any{"labels": labels}, &tok)
	var en hub.Enrollment
	e.ok(201, "POST", "/api/v1/agents/enroll", hub.EnrollRequest{Token: tok.Token, Name: name,
		Capabilities: hub.Capabilities{Kind: hub.KindEdge, OS: "linux", Arch: "amd64", CPUs: 2}}, &en)
	return en.AgentID
}

func TestDeployments(t *testing.T) {
	ctx := context.Background()
	e, ro, pushed := newDeployEnv(t)
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	e.ok(201, "POST", ws, map[string]string{"name": "w2"}, nil)
	models := ws + "/w/models"
	deps := ws + "/w/deployments"
	e.ok(201, "POST", models+"/clf/versions", onnxtest.MLP(4, []int{8}, 3, 1), nil)
	e.ok(201, "POST", models+"/clf/versions", onnxtest.MLP(4, []int{8}, 3, 2), nil)
	e.ok(200, "PUT", models+"/clf/aliases/prod", map[string]int{"version": 1}, nil)
	eu := e.enrollVia("eu-1", map[string]string{"zone": "eu"})
	us := e.enrollVia("us-1", map[string]string{"zone": "us"})

	// Create by alias and selector: resolved to version 1, alias kept.
	var d hub.Deployment
	e.ok(201, "POST", deps, hub.DeploymentCreate{Name: "fraud", Model: "clf@prod", Selector: map[string]string{"zone": "eu"},
		Options: hub.RuntimeOptions{MaxBatch: 4, MaxDelay: "2ms"}}, &d)
	if d.Version != 1 || d.Alias != "prod" || d.Workspace != "w" || len(d.Targets) != 1 || d.Targets[0] != (hub.DeploymentTarget{Agent: eu, State: hub.TargetPending}) {
		t.Fatalf("created %+v", d)
	}
	e.ok(201, "POST", deps, hub.DeploymentCreate{Name: "us", Model: "clf:2", Agents: []string{us}}, nil)

	// Refusals, each precise.
	for _, tc := range []struct {
		name       string
		path       string
		body       any
		status     int
		code       string
		contains   []string
		method     string
		wantStored int
	}{
		{name: "unknown model", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "nope:1", Agents: []string{eu}}, status: 404, code: "not_found", contains: []string{`model "nope"`}},
		{name: "unknown version", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf:9", Agents: []string{eu}}, status: 404, code: "not_found", contains: []string{"version 9"}},
		{name: "unknown alias", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf@canary", Agents: []string{eu}}, status: 404, code: "not_found", contains: []string{`alias "canary"`}},
		{name: "unknown agent", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf:1", Agents: []string{"ghost"}}, status: 404, code: "not_found", contains: []string{`agent "ghost"`}},
		{name: "no targets", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf:1"}, status: 400, code: "invalid", contains: []string{"expected agent ids or a label selector"}},
		{name: "both targets", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf:1", Agents: []string{eu}, Selector: map[string]string{"a": "b"}}, status: 400, code: "invalid", contains: []string{"exclusive"}},
		{name: "bad name", path: deps, body: hub.DeploymentCreate{Name: "a/b", Model: "clf:1", Agents: []string{eu}}, status: 400, code: "invalid", contains: []string{`deployment name "a/b"`}},
		{name: "bad delay", path: deps, body: hub.DeploymentCreate{Name: "x", Model: "clf:1", Agents: []string{eu}, Options: hub.RuntimeOptions{MaxDelay: "soon"}}, status: 400, code: "invalid", contains: []string{`max_delay "soon"`}},
		{name: "unknown field", path: deps, body: map[string]any{"name": "x", "model": "clf:1", "agent": eu}, status: 400, code: "invalid", contains: []string{"agent"}},
		{name: "name taken", path: deps, body: hub.DeploymentCreate{Name: "fraud", Model: "clf:2", Agents: []string{eu}}, status: 409, code: "conflict", contains: []string{"already exists"}},
		{name: "unknown workspace", path: ws + "/nope/deployments", body: hub.DeploymentCreate{Name: "x", Model: "clf:1", Agents: []string{eu}}, status: 404, code: "not_found", contains: []string{`workspace "nope"`}},
		{name: "deployed version", method: "DELETE", path: models + "/clf/versions/2", status: 409, code: "conflict", contains: []string{"deployed by [us]"}},
		{name: "update to unknown version", method: "PATCH", path: deps + "/fraud", body: hub.DeploymentUpdate{Model: "clf:7"}, status: 404, code: "not_found", contains: []string{"version 7"}},
		{name: "empty update", method: "PATCH", path: deps + "/fraud", body: map[string]any{}, status: 400, code: "invalid", contains: []string{"nothing to change"}},
		{name: "show unknown", method: "GET", path: deps + "/nope", status: 404, code: "not_found", contains: []string{`deployment "nope"`}},
		{name: "other workspace", method: "GET", path: ws + "/w2/deployments/fraud", status: 404, code: "not_found", contains: []string{`deployment "fraud" in workspace "w2"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.method
			if m == "" {
				m = "POST"
			}
			e.t = t
			e.fails(tc.status, tc.code, m, tc.path, tc.body, tc.contains...)
		})
	}
	e.t = t
	var list []hub.Deployment
	e.ok(200, "GET", deps, nil, &list)
	if len(list) != 2 || list[0].Name != "fraud" || list[1].Name != "us" || list[0].Version != 1 {
		t.Fatalf("after refusals: %+v", list)
	}

	// The rollout gets the change; the agent reports; show has its state.
	if err := ro.Sync(ctx, pushed); err != nil {
		t.Fatal(err)
	}
	pushed.mu.Lock()
	got := pushed.last[eu]
	pushed.mu.Unlock()
	if len(got.GetDeployments()) != 1 || got.GetDeployments()[0].GetName() != "fraud" || got.GetDeployments()[0].GetModel().GetVersion() != 1 ||
		got.GetDeployments()[0].GetOptions().GetMaxQueueDelayUs() != 2000 {
		t.Fatalf("pushed to %s: %v", eu, got)
	}
	ro.Reported(ctx, eu, &agentv1.ReportedState{ObservedGeneration: got.GetGeneration(), Endpoint: "http://10.1.2.3:8080",
		Deployments: []*agentv1.DeploymentStatus{{Name: "fraud", State: agentv1.DeploymentStatus_STATE_SERVING, ModelVersion: 1}}})
	d = hub.Deployment{}
	e.ok(200, "GET", deps+"/fraud", nil, &d)
	want := hub.DeploymentTarget{Agent: eu, State: hub.TargetServing, ModelVersion: 1, Endpoint: "http://10.1.2.3:8080/v2/models/fraud"}
	if len(d.Targets) != 1 || d.Targets[0] != want {
		t.Fatalf("targets %+v, want %+v", d.Targets, want)
	}

	// Update to version 2: the agent still serves 1, so the target is
	// pending until it reports 2.
	d = hub.Deployment{}
	e.ok(200, "PATCH", deps+"/fraud", hub.DeploymentUpdate{Model: "clf:2"}, &d)
	if d.Version != 2 || d.Alias != "" || d.Targets[0].State != hub.TargetPending || d.Targets[0].ModelVersion != 1 || d.Options.MaxBatch != 4 {
		t.Fatalf("updated %+v", d)
	}
	// Version 1 is no longer deployed.
	e.ok(204, "DELETE", models+"/clf/versions/1?force=true", nil, nil)

	e.ok(204, "DELETE", deps+"/fraud", nil, nil)
	e.fails(404, "not_found", "DELETE", deps+"/fraud", nil, `deployment "fraud"`)
	if err := ro.Sync(ctx, pushed); err != nil {
		t.Fatal(err)
	}
	pushed.mu.Lock()
	got = pushed.last[eu]
	pushed.mu.Unlock()
	if len(got.GetDeployments()) != 0 || got.GetGeneration() != 2 {
		t.Fatalf("after delete, pushed %v", got)
	}
}

// FuzzDeploymentBody: any create or update body is answered 2xx, 400, 404
// or 409 with a JSON error, never 500, and a refused one stores nothing.
func FuzzDeploymentBody(f *testing.F) {
	f.Add([]byte(`{"name":"d","model":"clf:1","selector":{"zone":"eu"}}`), false)
	f.Add([]byte(`{"name":"d","model":"clf@prod","agents":["a","a"]}`), false)
	f.Add([]byte(`{"name":"d","model":"clf","selector":{"z":"e"},"options":{"max_batch":-1,"max_delay":"1h"}}`), false)
	f.Add([]byte(`{"model":"clf:1","options":{"max_delay":"3ms"}}`), true)
	f.Add([]byte(`{"selector":{}}`), true)
	f.Add([]byte(`[]`), true)
	e := newEnv(f, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	e.ok(201, "POST", ws+"/w/models/clf/versions", onnxtest.MLP(2, []int{3}, 2, 5), nil)
	e.ok(200, "PUT", ws+"/w/models/clf/aliases/prod", map[string]int{"version": 1}, nil)
	e.ok(201, "POST", ws+"/w/deployments", hub.DeploymentCreate{Name: "fixed", Model: "clf:1", Selector: map[string]string{"k": "v"}}, nil)
	f.Fuzz(func(t *testing.T, body []byte, update bool) {
		te := *e
		te.t = t
		method, path := "POST", ws+"/w/deployments"
		if update {
			method, path = "PATCH", ws+"/w/deployments/fixed"
		}
		code, out := te.do(method, path, body)
		switch code {
		case 200, 201:
			if !update {
				var d hub.Deployment
				if err := json.Unmarshal(out, &d); err != nil {
					t.Fatal(err)
				}
				te.ok(204, "DELETE", ws+"/w/deployments/"+d.Name, nil, nil)
			}
		case 400, 404, 409:
			var eb hub.ErrorBody
			if err := json.Unmarshal(out, &eb); err != nil || eb.Error == "" {
				t.Fatalf("%d with body %s", code, out)
			}
		default:
			t.Fatalf("status %d: %s", code, out)
		}
	})
}
