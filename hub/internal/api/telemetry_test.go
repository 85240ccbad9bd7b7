package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// telemetryEnv is an API over a real store the test also ingests into.
type telemetryEnv struct {
	*env
	st *sqlite.Store
}

func newTelemetryEnv(t *testing.T) *telemetryEnv {
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
	a := api.New(api.Config{}, st, bl, log)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.Metrics(extraSeries{}))
	mux.Handle("/", a.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(a.Close)
	return &telemetryEnv{env: &env{t: t, url: srv.URL, api: a}, st: st}
}

type extraSeries struct{}

func (extraSeries) WritePrometheus(w io.Writer) error {
	_, err := io.WriteString(w, "# HELP atelier_test_total A test series.\n# TYPE atelier_test_total counter\natelier_test_total 7\n")
	return err
}

// batch is seq's batch: 10 ok and 2 error requests of dep, ending minutes ago.
func batch(seq uint64, dep string) *agentv1.TelemetryBatch {
	end := time.Now().Add(-10*time.Minute + time.Duration(seq)*10*time.Second)
	return &agentv1.TelemetryBatch{
		Seq: seq, StartUnixNano: end.Add(-10 * time.Second).UnixNano(), EndUnixNano: end.UnixNano(),
		Agent: &agentv1.AgentTelemetry{ProcessRssBytes: 1 << 20},
		Deployments: []*agentv1.DeploymentTelemetry{{
			Name: dep, ModelVersion: 1, Requests: map[string]uint64{"ok": 10, "error": 2},
			RequestSeconds: &agentv1.Histogram{Bounds: []float64{0.005, 0.01, 0.05}, Counts: []uint64{4, 4, 3, 1}, Sum: 0.3},
		}},
	}
}

// TestTelemetryRoutes: deployment and agent metrics over REST with exact
// counts, the agent filter, precise 400s and 404s; GET /metrics.
func TestTelemetryRoutes(t *testing.T) {
	e := newTelemetryEnv(t)
	const ws = "/api/v1/workspaces"
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	e.ok(201, "POST", ws+"/w/models/clf/versions", onnxtest.MLP(4, []int{8}, 3, 1), nil)
	e.ok(201, "POST", ws+"/w/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Selector: map[string]string{"zone": "eu"}}, nil)
	res, err := e.st.IngestTelemetry(context.Background(), []hub.TelemetryUpload{
		{Agent: "a1", Batches: []*agentv1.TelemetryBatch{batch(1, "fraud"), batch(2, "fraud")}},
		{Agent: "a2", Batches: []*agentv1.TelemetryBatch{batch(1, "fraud")}},
	})
	if err != nil || res.Stored != 3 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}

	var m hub.DeploymentMetrics
	e.ok(200, "GET", ws+"/w/deployments/fraud/metrics?since=1h", nil, &m)
	if m.Deployment != "fraud" || m.Total.Requests != 36 || m.Total.Errors != 6 || m.Total.ByOutcome["ok"] != 30 {
		t.Errorf("total %+v", m.Total)
	}
	if len(m.Agents) != 2 || m.Agents[0].Agent != "a1" || m.Agents[0].Requests != 24 || m.Agents[1].Requests != 12 {
		t.Errorf("agents %+v", m.Agents)
	}
	e.ok(200, "GET", ws+"/w/deployments/fraud/metrics?agent=a2", nil, &m)
	if m.Total.Requests != 12 || len(m.Agents) != 1 || m.Agents[0].Agent != "a2" {
		t.Errorf("agent a2: total %d, agents %+v", m.Total.Requests, m.Agents)
	}
	// A window after the batches: zero figures, not an error.
	e.ok(200, "GET", ws+"/w/deployments/fraud/metrics?since=2m", nil, &m)
	if m.Total.Requests != 0 || m.Agents == nil {
		t.Errorf("recent window: %+v, agents %v", m.Total, m.Agents)
	}
	// The JSON has total and agents with the documented keys.
	_, raw := e.do("GET", ws+"/w/deployments/fraud/metrics", nil)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	total, _ := doc["total"].(map[string]any)
	for _, k := range []string{"requests", "errors", "latency_p50_ms", "latency_p99_ms"} {
		if _, ok := total[k]; !ok {
			t.Errorf("total lacks %q: %s", k, raw)
		}
	}
	if _, ok := doc["agents"].([]any); !ok {
		t.Errorf("agents is not an array: %s", raw)
	}

	var am hub.AgentMetrics
	e.ok(200, "GET", "/api/v1/agents/a1/metrics?since=1h", nil, &am)
	if am.Agent != "a1" || am.Batches != 2 || len(am.Deployments) != 1 || am.Deployments[0].Requests != 24 {
		t.Errorf("agent metrics %+v", am)
	}

	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct{ path, contains string }{
		{ws + "/w/deployments/fraud/metrics?since=yesterday", `since="yesterday": expected a Go duration`},
		{ws + "/w/deployments/fraud/metrics?since=-1h", "expected a duration above 0"},
		{ws + "/w/deployments/fraud/metrics?since=" + future, "in the future"},
		{ws + "/w/deployments/fraud/metrics?agent=A_1", `agent="A_1": expected an agent id`},
		{ws + "/w/deployments/fraud/metrics?sinse=1h", `"sinse": unknown; expected since and agent`},
		{"/api/v1/agents/a1/metrics?agent=a1", `"agent": unknown; expected since`},
	} {
		e.fails(400, "invalid", "GET", c.path, nil, c.contains)
	}
	for _, p := range []string{ws + "/w/deployments/nope/metrics", ws + "/nows/deployments/fraud/metrics", "/api/v1/agents/ghost/metrics", "/api/v1/agents/Bad_Id/metrics"} {
		e.fails(404, "not_found", "GET", p, nil)
	}

	// GET /metrics: the store's series, then the extra source's.
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		"# TYPE atelier_agents gauge\n",
		`atelier_agents{state="online"} 0` + "\n",
		"# TYPE atelier_deployment_requests_total counter\n",
		`atelier_deployment_requests_total{deployment="fraud",outcome="error"} 6` + "\n",
		`atelier_deployment_requests_total{deployment="fraud",outcome="ok"} 30` + "\n",
		"# TYPE atelier_deployment_request_duration_seconds histogram\n",
		`atelier_deployment_request_duration_seconds_bucket{deployment="fraud",le="0.01"} 24` + "\n",
		`atelier_deployment_request_duration_seconds_bucket{deployment="fraud",le="+Inf"} 36` + "\n",
		`atelier_deployment_request_duration_seconds_sum{deployment="fraud"} 0.8999`,
		`atelier_deployment_request_duration_seconds_count{deployment="fraud"} 36` + "\n",
		"atelier_test_total 7\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, text)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	// Other methods on /metrics reach the API's catch-all.
	e.fails(404, "not_found", "POST", "/metrics", nil)

	// A store that fails: 500, nothing half written.
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || strings.Contains(string(body), "atelier_") {
		t.Errorf("closed store: %d %s", resp.StatusCode, fmt.Sprintf("%.200s", body))
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-05-01T10:00:00Z": time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := api.ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0s", "-5m", "10000h", "tomorrow", "2026-05-01T13:00:00Z"} {
		if _, err := api.ParseSince(in, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", in)
		}
	}
}

// TestDeploymentTelemetryStaysInItsWorkspace: deployment names are unique
// hub-wide and telemetry is stored by name, so every per-deployment
// telemetry route (metrics, drift, captured inputs) must check the
// deployment is in the URL's workspace: another workspace, an unknown one,
// or a deployment deleted since answers 404 and shows nothing.
func TestDeploymentTelemetryStaysInItsWorkspace(t *testing.T) {
	e := newTelemetryEnv(t)
	e.ok(201, "POST", ws, map[string]string{"name": "owner"}, nil)
	e.ok(201, "POST", ws, map[string]string{"name": "other"}, nil)
	for _, w := range []string{"owner", "other"} {
		e.ok(201, "POST", ws+"/"+w+"/models/clf/versions", onnxtest.MLP(4, []int{8}, 3, 1), nil)
	}
	e.ok(201, "POST", ws+"/owner/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Selector: map[string]string{"zone": "eu"}}, nil)
	e.ok(201, "POST", ws+"/other/deployments", hub.DeploymentCreate{Name: "mine", Model: "clf:1", Selector: map[string]string{"zone": "us"}}, nil)
	b := batch(1, "fraud")
	b.Deployments[0].Captured = [][]byte{[]byte(`{"inputs":[]}`)}
	if res, err := e.st.IngestTelemetry(context.Background(), []hub.TelemetryUpload{{Agent: "a1", Batches: []*agentv1.TelemetryBatch{b}}}); err != nil || res.Stored != 1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}

	routes := []string{"/metrics?since=1h", "/drift?since=1h", "/captured"}
	// The owner's workspace sees its deployment.
	var m hub.DeploymentMetrics
	e.ok(200, "GET", ws+"/owner/deployments/fraud/metrics?since=1h", nil, &m)
	if m.Total.Requests != 12 {
		t.Fatalf("owner's metrics: %+v, want 12 requests", m.Total)
	}
	var caps []hub.CapturedInput
	e.ok(200, "GET", ws+"/owner/deployments/fraud/captured", nil, &caps)
	if len(caps) != 1 {
		t.Fatalf("owner's captured inputs: %+v, want 1", caps)
	}
	e.ok(200, "GET", ws+"/owner/deployments/fraud/drift?since=1h", nil, nil)

	for _, r := range routes {
		// Another existing workspace: not found there, whatever it holds.
		e.fails(404, "not_found", "GET", ws+"/other/deployments/fraud"+r, nil, `deployment "fraud" in workspace "other"`)
		// An unknown workspace.
		e.fails(404, "not_found", "GET", ws+"/ghost/deployments/fraud"+r, nil, `workspace "ghost"`)
		// The other way round: other's deployment is not the owner's.
		e.fails(404, "not_found", "GET", ws+"/owner/deployments/mine"+r, nil, `deployment "mine" in workspace "owner"`)
	}

	// Deleted, the deployment belongs to no workspace: its telemetry is
	// no longer answered by any (the hub cannot tell whose it was).
	e.ok(204, "DELETE", ws+"/owner/deployments/fraud", nil, nil)
	for _, w := range []string{"owner", "other"} {
		for _, r := range routes {
			e.fails(404, "not_found", "GET", ws+"/"+w+"/deployments/fraud"+r, nil, `deployment "fraud" in workspace "`+w+`"`)
		}
	}
}
