package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/fleet"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
	"github.com/atelier-ml/atelier/scoring"
)

// telemetryBatch is seq's batch: 10 ok and 2 error requests of deployment
// dep over 10 s ending a few minutes ago.
func telemetryBatch(seq uint64, dep string) *agentv1.TelemetryBatch {
	end := time.Now().Add(-5*time.Minute + time.Duration(seq)*10*time.Second)
	return &agentv1.TelemetryBatch{
		Seq: seq, StartUnixNano: end.Add(-10 * time.Second).UnixNano(), EndUnixNano: end.UnixNano(),
		Agent: &agentv1.AgentTelemetry{ProcessCpuSeconds: 1, ProcessRssBytes: 100 << 20, HostCpuUtilization: 0.25, UptimeSeconds: 600},
		Deployments: []*agentv1.DeploymentTelemetry{{
			Name: dep, ModelVersion: 1, Requests: map[string]uint64{"ok": 10, "error": 2}, Backend: "cpu",
			RequestSeconds: &agentv1.Histogram{Bounds: []float64{0.005, 0.01, 0.05}, Counts: []uint64{4, 4, 3, 1}, Sum: 0.3},
			BatchSize:      &agentv1.Histogram{Bounds: []float64{1, 2, 4}, Counts: []uint64{12, 0, 0, 0}, Sum: 12},
		}},
	}
}

// TestTelemetryThroughRealHub: an enrolled agent's real MQTT client
// publishes uploads, some batches of them duplicated; each upload is
// acknowledged through its last seq; the REST metrics count every batch
// exactly once; GET /metrics is well-formed and has the series.
func TestTelemetryThroughRealHub(t *testing.T) {
	s, _ := startHub(t, nil)
	base := "http://" + s.Addrs().HTTP
	wsURL := base + "/api/v1/workspaces/w"
	call(t, "POST", base+"/api/v1/workspaces", map[string]string{"name": "w"}, nil, 201)
	call(t, "POST", wsURL+"/models/clf/versions", onnxtest.MLP(4, []int{8}, 3, 1), nil, 201)
	en := enrollTestAgent(t, base, "edge-1")
	call(t, "POST", wsURL+"/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Agents: []string{en.AgentID}}, nil, 201)

	ta, err := dialAgent(t, en)
	if err != nil {
		t.Fatal(err)
	}
	ta.publish(t, topics.Topic(en.AgentID, topics.Presence), true, &agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE})
	waitState(t, base, en.AgentID, hub.AgentOnline)
	acks := make(chan *agentv1.TelemetryAck, 8)
	if tok := ta.c.Subscribe(topics.Topic(en.AgentID, topics.TelemetryAck), 1, func(_ mqtt.Client, m mqtt.Message) {
		var a agentv1.TelemetryAck
		if err := proto.Unmarshal(m.Payload(), &a); err != nil {
			t.Errorf("undecodable ack: %v", err)
		}
		acks <- &a
	}); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	send := func(seqs ...uint64) {
		t.Helper()
		u := &agentv1.TelemetryUpload{}
		for _, q := range seqs {
			u.Batches = append(u.Batches, telemetryBatch(q, "fraud"))
		}
		ta.publish(t, topics.Topic(en.AgentID, topics.Telemetry), false, u)
		select {
		case a := <-acks:
			if a.GetThroughSeq() != seqs[len(seqs)-1] || a.GetError() != "" {
				t.Fatalf("upload %v acked %v", seqs, a)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("upload %v not acknowledged", seqs)
		}
	}
	send(1, 2)
	send(2, 3)    // 2 again
	send(1, 2, 3) // all again: an agent resending after a lost ack

	var m hub.DeploymentMetrics
	call(t, "GET", wsURL+"/deployments/fraud/metrics?since=1h", nil, &m, 200)
	if m.Total.Requests != 36 || m.Total.Errors != 6 || m.Total.ByOutcome["ok"] != 30 || m.Total.ByOutcome["error"] != 6 {
		t.Errorf("total %+v, want 36 requests (30 ok, 6 error)", m.Total)
	}
	if len(m.Agents) != 1 || m.Agents[0].Agent != en.AgentID || m.Agents[0].Requests != 36 {
		t.Errorf("agents %+v, want one %s with 36 requests", m.Agents, en.AgentID)
	}
	if m.Total.LatencyP50Ms <= 0 || m.Total.LatencyP50Ms > 50 {
		t.Errorf("p50 %v ms, want within the histogram's bounds", m.Total.LatencyP50Ms)
	}
	call(t, "GET", wsURL+"/deployments/fraud/metrics?since=1h&agent="+en.AgentID, nil, &m, 200)
	if m.Total.Requests != 36 {
		t.Errorf("agent-filtered total %d, want 36", m.Total.Requests)
	}
	var am hub.AgentMetrics
	call(t, "GET", base+"/api/v1/agents/"+en.AgentID+"/metrics", nil, &am, 200)
	if am.Batches != 3 || len(am.Deployments) != 1 || am.Deployments[0].Requests != 36 {
		t.Errorf("agent metrics: %d batches, deployments %+v; want 3 batches, fraud with 36", am.Batches, am.Deployments)
	}
	call(t, "GET", wsURL+"/deployments/fraud/metrics?since=yesterday", nil, nil, 400)
	call(t, "GET", wsURL+"/deployments/fraud/metrics?agent=Not_An_Id", nil, nil, 400)
	call(t, "GET", wsURL+"/deployments/nope/metrics", nil, nil, 404)
	call(t, "GET", base+"/api/v1/workspaces/nows/deployments/fraud/metrics", nil, nil, 404)
	call(t, "GET", base+"/api/v1/agents/ghost/metrics", nil, nil, 404)

	text := scrape(t, base+"/metrics")
	for _, want := range []string{
		`atelier_agents{state="online"} 1`,
		`atelier_deployment_requests_total{deployment="fraud",outcome="ok"} 30`,
		`atelier_deployment_requests_total{deployment="fraud",outcome="error"} 6`,
		`atelier_deployment_request_duration_seconds_bucket{deployment="fraud",le="0.005"} 12`,
		`atelier_deployment_request_duration_seconds_bucket{deployment="fraud",le="+Inf"} 36`,
		`atelier_deployment_request_duration_seconds_count{deployment="fraud"} 36`,
		`atelier_telemetry_uploads_total 3`,
		`atelier_telemetry_batches_ingested_total 3`,
		`atelier_telemetry_batches_duplicated_total 4`,
		`atelier_telemetry_ingest_duration_seconds_count `,
	} {
		if !strings.Contains(text, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// POST /metrics is not a route: the API's catch-all answers.
	call(t, "POST", base+"/metrics", nil, nil, 404)
}

// scrape GETs a Prometheus endpoint and checks every line of its text
// format: HELP and TYPE before a family's samples, one TYPE per family,
// sample names of the family's type, label syntax, numeric values,
// cumulative histogram buckets ending with +Inf equal to _count.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics = %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if err := checkExposition(string(b)); err != nil {
		t.Fatalf("/metrics: %v\n%s", err, b)
	}
	return "\n" + string(b)
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$`)
	leRE     = regexp.MustCompile(`le="([^"]*)"`)
)

func checkExposition(text string) error {
	types := map[string]string{}
	helps := map[string]bool{}
	var family string
	lastBucket := map[string]float64{} // series without le → last cumulative count
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(line[7:], " ", 2)
			if len(f) != 2 || f[1] == "" || helps[f[0]] {
				return fmt.Errorf("line %d: bad or repeated HELP: %q", n, line)
			}
			helps[f[0]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line[7:])
			if len(f) != 2 || types[f[0]] != "" || !helps[f[0]] {
				return fmt.Errorf("line %d: bad or repeated TYPE, or TYPE without HELP: %q", n, line)
			}
			switch f[1] {
			case "counter", "gauge", "histogram":
			default:
				return fmt.Errorf("line %d: type %q", n, f[1])
			}
			if f[1] == "counter" && !strings.HasSuffix(f[0], "_total") {
				return fmt.Errorf("line %d: counter %s without _total", n, f[0])
			}
			types[f[0]], family = f[1], f[0]
		case line == "" || strings.HasPrefix(line, "#"):
			return fmt.Errorf("line %d: unexpected %q", n, line)
		default:
			m := sampleRE.FindStringSubmatch(line)
			if m == nil {
				return fmt.Errorf("line %d: malformed sample %q", n, line)
			}
			name, labels, value := m[1], m[2], m[3]
			switch types[family] {
			case "histogram":
				if name != family+"_bucket" && name != family+"_sum" && name != family+"_count" {
					return fmt.Errorf("line %d: %s in histogram %s", n, name, family)
				}
			case "":
				return fmt.Errorf("line %d: sample before any TYPE", n)
			default:
				if name != family {
					return fmt.Errorf("line %d: %s in family %s", n, name, family)
				}
			}
			var v float64
			if _, err := fmt.Sscan(strings.Replace(value, "+Inf", "Inf", 1), &v); err != nil && value != "NaN" && value != "+Inf" {
				return fmt.Errorf("line %d: value %q: %v", n, value, err)
			}
			key := family + normLabels(leRE.ReplaceAllString(labels, ""))
			switch {
			case types[family] == "histogram" && name == family+"_bucket":
				if !leRE.MatchString(labels) {
					return fmt.Errorf("line %d: bucket without le", n)
				}
				if prev, ok := lastBucket[key]; ok && v < prev {
					return fmt.Errorf("line %d: bucket count %v below the previous %v (not cumulative)", n, v, prev)
				}
				lastBucket[key] = v
				if leRE.FindStringSubmatch(labels)[1] == "+Inf" {
					lastBucket[key+"+Inf"] = v
				}
			case types[family] == "histogram" && name == family+"_count":
				inf, ok := lastBucket[family+normLabels(labels)+"+Inf"]
				if !ok || inf != v {
					return fmt.Errorf("line %d: _count %v, but +Inf bucket %v (present: %v)", n, v, inf, ok)
				}
			}
		}
	}
	return sc.Err()
}

// normLabels drops separators left by removing le.
func normLabels(s string) string {
	s = strings.NewReplacer(",}", "}", "{,", "{", ",,", ",").Replace(s)
	if s == "{}" {
		return ""
	}
	return s
}

// TestCheckExposition: the line checker refuses what it should.
func TestCheckExposition(t *testing.T) {
	const good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n" +
		"# HELP h H.\n# TYPE h histogram\nh_bucket{d=\"x\",le=\"0.1\"} 1\nh_bucket{d=\"x\",le=\"+Inf\"} 2\nh_sum{d=\"x\"} 0.5\nh_count{d=\"x\"} 2\n"
	if err := checkExposition(good); err != nil {
		t.Fatalf("good text refused: %v", err)
	}
	for name, bad := range map[string]string{
		"no HELP":        "# TYPE a_total counter\na_total 1\n",
		"counter name":   "# HELP a A.\n# TYPE a counter\na 1\n",
		"bad value":      "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",
		"bad label":      "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 1\n",
		"other family":   "# HELP a_total A.\n# TYPE a_total counter\nb_total 1\n",
		"not cumulative": "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
		"count mismatch": "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n",
		"repeated TYPE":  "# HELP a_total A.\n# TYPE a_total counter\n# TYPE a_total counter\n",
		"blank line":     "# HELP a_total A.\n# TYPE a_total counter\n\na_total 1\n",
		"sample untyped": "a_total 1\n",
	} {
		if err := checkExposition(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ackRecorder records the acks the ingester publishes.
type ackRecorder struct {
	acks chan fleet.TelemetryAck
}

func (r *ackRecorder) AckTelemetry(_ context.Context, acks ...fleet.TelemetryAck) error {
	for _, a := range acks {
		r.acks <- a
	}
	return nil
}

// TestIngesterGroupCommits: uploads of many agents queued together are
// stored in one transaction and each acknowledged through its last seq;
// when the store fails nothing is acknowledged and the failure counted.
func TestIngesterGroupCommits(t *testing.T) {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const agents = 50
	g := newIngester(ingestConfig{Window: time.Hour, MaxUploads: agents}, st, slog.New(slog.DiscardHandler))
	for i := range agents {
		u := &agentv1.TelemetryUpload{Batches: []*agentv1.TelemetryBatch{telemetryBatch(uint64(i+1), "fraud"), telemetryBatch(uint64(i+2), "fraud")}}
		if !g.OfferTelemetry(fmt.Sprintf("agent-%d", i), u) {
			t.Fatal("queue full")
		}
	}
	rec := &ackRecorder{acks: make(chan fleet.TelemetryAck, agents+1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx, rec); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := range agents {
		select {
		case a := <-rec.acks:
			if a.Agent != fmt.Sprintf("agent-%d", i) || a.ThroughSeq != uint64(i+2) || a.Error != "" {
				t.Fatalf("ack %d: %+v", i, a)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d acks", i)
		}
	}
	if c := g.counters(); c != (ingestCounters{Uploads: agents, Stored: 2 * agents, Commits: 1, Points: c.Points}) || c.Points == 0 {
		t.Fatalf("counters %+v, want %d uploads and %d batches in 1 commit", c, agents, 2*agents)
	}
	var sb strings.Builder
	if err := (telemetryMetrics{g: g, fleet: func() fleet.TelemetryCounters { return fleet.TelemetryCounters{Dropped: 7} }}).WritePrometheus(&sb); err != nil {
		t.Fatal(err)
	}
	if err := checkExposition(sb.String()); err != nil {
		t.Fatalf("%v\n%s", err, sb.String())
	}
	for _, want := range []string{"atelier_telemetry_ingest_transactions_total 1\n", "atelier_telemetry_uploads_dropped_total 7\n",
		"atelier_telemetry_ingest_duration_seconds_count 1\n"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// An invalid batch (histogram with the wrong number of counts) is
	// skipped, counted, and its upload still acknowledged.
	g.cfg.MaxUploads = 1 // read by run only after the next upload arrives
	bad := telemetryBatch(1, "fraud")
	bad.Deployments[0].RequestSeconds.Counts = []uint64{1}
	g.OfferTelemetry("agent-bad", &agentv1.TelemetryUpload{Batches: []*agentv1.TelemetryBatch{bad}})
	select {
	case a := <-rec.acks:
		if a.Agent != "agent-bad" || a.ThroughSeq != 1 {
			t.Fatalf("ack %+v", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("upload with an invalid batch not acknowledged")
	}
	if c := g.counters(); c.Rejected != 1 || c.Stored != 2*agents {
		t.Fatalf("counters %+v, want 1 rejected", c)
	}

	// A failing store: nothing acknowledged.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	g.OfferTelemetry("agent-x", &agentv1.TelemetryUpload{Batches: []*agentv1.TelemetryBatch{telemetryBatch(1, "fraud")}})
	deadline := time.Now().Add(30 * time.Second)
	for g.counters().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("store failure not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case a := <-rec.acks:
		t.Fatalf("acked %+v although the store failed", a)
	default:
	}
}

// BenchmarkIngester1000Agents: one round of 1,000 agents each uploading
// one batch (one deployment), through the ingester into a real store, until
// every upload is acknowledged. ns/op is the cost of one second of a
// 1,000-agent fleet reporting every second.
func BenchmarkIngester1000Agents(b *testing.B) {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	const agents = 1000
	g := newIngester(ingestConfig{QueueSize: agents}, st, slog.New(slog.DiscardHandler))
	rec := &ackRecorder{acks: make(chan fleet.TelemetryAck, agents)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx, rec); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	ids := make([]string, agents)
	for i := range ids {
		ids[i] = fmt.Sprintf("agent-%04d", i)
	}
	b.ResetTimer()
	for n := range b.N {
		for _, id := range ids {
			for !g.OfferTelemetry(id, &agentv1.TelemetryUpload{Batches: []*agentv1.TelemetryBatch{telemetryBatch(uint64(n+1), "fraud")}}) {
				time.Sleep(time.Millisecond)
			}
		}
		for range agents {
			<-rec.acks
		}
	}
	b.StopTimer()
	c := g.counters()
	b.ReportMetric(float64(c.Commits)/float64(b.N), "commits/op")
	if c.Stored != uint64(agents*b.N) {
		b.Fatalf("stored %d, want %d", c.Stored, agents*b.N)
	}
}

// fakeScoring is the scoring totals a real agent reports: deployment
// fraud, version 1, ok requests set by the test.
type fakeScoring struct {
	mu sync.Mutex
	ok uint64
}

func (f *fakeScoring) set(n uint64) {
	f.mu.Lock()
	f.ok = n
	f.mu.Unlock()
}

func (f *fakeScoring) stats() []scoring.VersionStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []scoring.VersionStats{{ID: 1, Model: "fraud", Version: "1", Requests: map[string]uint64{"ok": f.ok}}}
}

// runHub runs a hub on cfg until the returned stop is called.
func runHub(t testing.TB, cfg Config) (*Server, func()) {
	t.Helper()
	s, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// TestRealAgentTelemetryThroughHubRestart: the real agent package reports
// its scoring totals; the hub counts them exactly. The hub stops, requests
// are scored while it is down (the agent spools), the hub comes back on
// the same addresses and data: it ends with exactly every request, and
// further batches do not count anything twice.
func TestRealAgentTelemetryThroughHubRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	s, stopHub := runHub(t, cfg)
	addrs := s.Addrs()
	base := "http://" + addrs.HTTP
	call(t, "POST", base+"/api/v1/workspaces", map[string]string{"name": "w"}, nil, 201)
	call(t, "POST", base+"/api/v1/workspaces/w/models/clf/versions", onnxtest.MLP(4, []int{8}, 3, 1), nil, 201)
	// Targeting no agent: the agent reports scoring totals, not what it loaded.
	call(t, "POST", base+"/api/v1/workspaces/w/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Selector: map[string]string{"zone": "none"}}, nil, 201)
	en := enrollTestAgent(t, base, "edge-1")

	sc := &fakeScoring{} // 0 when the agent starts: its baseline
	ag, err := agent.New(agent.Config{ID: en.AgentID, DataDir: t.TempDir(), Broker: en.MQTTURL, Username: en.AgentID, Password: en.Secret,
		Endpoint: "http://127.0.0.1:8000", Capabilities: &agentv1.Capabilities{Kind: "edge"}, Heartbeat: time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RetryInterval: time.Second,
		Stats: sc.stats, TelemetryInterval: time.Second, TelemetryIdleInterval: time.Second, TelemetryAckTimeout: 2 * time.Second,
	}, &loadRecorder{serving: map[string]string{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(actx) }()
	t.Cleanup(func() { stopAgent(); <-agentDone })
	sc.set(100)

	metricsURL := base + "/api/v1/workspaces/w/deployments/fraud/metrics?since=1h"
	waitRequests := func(want uint64) hub.DeploymentMetrics {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var m hub.DeploymentMetrics
			call(t, "GET", metricsURL, nil, &m, 200)
			if m.Total.Requests == want {
				return m
			}
			if m.Total.Requests > want {
				t.Fatalf("hub counts %d requests, more than the %d scored", m.Total.Requests, want)
			}
			if time.Now().After(deadline) {
				t.Fatalf("hub counts %d requests, want %d", m.Total.Requests, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitRequests(100)

	// The hub goes away; 150 more requests are scored meanwhile.
	stopHub()
	sc.set(250)
	time.Sleep(2500 * time.Millisecond) // let the agent spool a few batches while the hub is down
	cfg.HTTP, cfg.MQTT, cfg.NATS = addrs.HTTP, addrs.MQTT, addrs.NATS
	runHub(t, cfg)
	m := waitRequests(250)
	if len(m.Agents) != 1 || m.Agents[0].Agent != en.AgentID || m.Agents[0].ByOutcome["ok"] != 250 {
		t.Errorf("agents %+v", m.Agents)
	}
	// Later batches (deltas of zero) change nothing.
	var am hub.AgentMetrics
	call(t, "GET", base+"/api/v1/agents/"+en.AgentID+"/metrics", nil, &am, 200)
	before := am.Batches
	deadline := time.Now().Add(60 * time.Second)
	for am.Batches < before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("agent batches stuck at %d", am.Batches)
		}
		time.Sleep(200 * time.Millisecond)
		call(t, "GET", base+"/api/v1/agents/"+en.AgentID+"/metrics", nil, &am, 200)
	}
	waitRequests(250)
	text := scrape(t, base+"/metrics")
	if !strings.Contains(text, "\n"+`atelier_deployment_requests_total{deployment="fraud",outcome="ok"} 250`+"\n") {
		t.Errorf("/metrics lacks fraud ok 250:\n%s", text)
	}
}

// BenchmarkTelemetryThroughHub: a real hub and 100 agents' real MQTT
// clients; one op is every agent publishing one upload (one batch) and
// receiving its ack: broker, fleet, group commit into SQLite, acks.
func BenchmarkTelemetryThroughHub(b *testing.B) {
	const agents = 100
	cfg := DefaultConfig()
	cfg.Data = b.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, _ := runHub(b, cfg)
	base := "http://" + s.Addrs().HTTP
	postJSON := func(path string, in, out any) {
		body, _ := json.Marshal(in)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			b.Fatal(err)
		}
	}
	acks := make(chan uint64, agents)
	clients := make([]mqtt.Client, agents)
	ids := make([]string, agents)
	for i := range agents {
		var tok hub.JoinToken
		postJSON("/api/v1/agents/tokens", map[string]any{}, &tok)
		var en hub.Enrollment
		postJSON("/api/v1/agents/enroll", hub.EnrollRequest{Token: tok.Token, Name: fmt.Sprintf("bench-%d", i), Capabilities: hub.Capabilities{Kind: "edge"}}, &en)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(en.MQTTURL).SetClientID(en.AgentID).SetUsername(en.AgentID).
			SetPassword(en.Secret).SetProtocolVersion(4).SetAutoReconnect(false))
		if t := c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("connect: %v", t.Error())
		}
		b.Cleanup(func() { c.Disconnect(0) })
		if t := c.Subscribe(topics.Topic(en.AgentID, topics.TelemetryAck), 1, func(_ mqtt.Client, m mqtt.Message) {
			var a agentv1.TelemetryAck
			_ = proto.Unmarshal(m.Payload(), &a)
			acks <- a.GetThroughSeq()
		}); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("subscribe: %v", t.Error())
		}
		clients[i], ids[i] = c, en.AgentID
	}
	b.ResetTimer()
	for n := range b.N {
		for i, c := range clients {
			payload, _ := proto.Marshal(&agentv1.TelemetryUpload{Batches: []*agentv1.TelemetryBatch{telemetryBatch(uint64(n+1), "fraud")}})
			c.Publish(topics.Topic(ids[i], topics.Telemetry), 1, false, payload)
		}
		for range agents {
			select {
			case <-acks:
			case <-time.After(60 * time.Second):
				b.Fatal("acks missing")
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(agents*b.N)/b.Elapsed().Seconds(), "uploads/s")
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(text), "\n") {
		for _, name := range []string{"atelier_telemetry_ingest_transactions_total ", "atelier_telemetry_ingest_duration_seconds_sum ", "atelier_telemetry_uploads_total "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				var f float64
				fmt.Sscan(v, &f)
				b.ReportMetric(f/float64(b.N), strings.TrimSpace(strings.TrimPrefix(name, "atelier_telemetry_"))+"/op")
			}
		}
	}
}

func TestBatchPoints(t *testing.T) {
	b := &agentv1.TelemetryBatch{
		Agent:  &agentv1.AgentTelemetry{},
		Events: []*agentv1.AgentEvent{{Kind: "rollback"}},
		Deployments: []*agentv1.DeploymentTelemetry{{
			Requests:       map[string]uint64{"ok": 3, "error": 1},
			RequestSeconds: &agentv1.Histogram{Bounds: []float64{1, 2}, Counts: []uint64{1, 2, 1}},
			BatchSize:      &agentv1.Histogram{Bounds: []float64{1}, Counts: []uint64{4, 0}},
			Features:       []*agentv1.FeatureSummary{{Sketch: &agentv1.Sketch{Keys: []int32{1, 2}, Counts: []uint64{1, 3}}}, {}},
			Captured:       [][]byte{[]byte(`{}`)},
		}},
	}
	// 10 host figures + 1 event + 2 outcomes + 1 capture + 3+2 buckets + (6+2) + 6 feature values.
	if got, want := batchPoints(b), uint64(10+1+2+1+5+8+6); got != want {
		t.Fatalf("batchPoints = %d, want %d", got, want)
	}
}
