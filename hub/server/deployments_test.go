package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// loadRecorder is an agent.Server that records what it is asked to serve
// and checks each file's digest.
type loadRecorder struct {
	mu      sync.Mutex
	serving map[string]string // deployment → "v{version} {sha256 of the file}"
}

func (l *loadRecorder) Load(_ context.Context, spec *agentv1.DeploymentSpec, path string) error {
	deployment, version := spec.GetName(), spec.GetModel().GetVersion()
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serving[deployment] = fmt.Sprintf("v%d %s", version, hex.EncodeToString(sum[:]))
	return nil
}

func (l *loadRecorder) Unload(_ context.Context, deployment string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.serving, deployment)
	return nil
}

func (l *loadRecorder) get(deployment string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.serving[deployment]
}

// call sends body (raw bytes, or a value as JSON) and decodes the answer,
// which must have status want.
func call(t *testing.T, method, url string, body any, out any, want int) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s, want %d", method, url, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, url, raw, err)
		}
	}
}

// waitTarget polls the deployment until its only target satisfies ok (at
// most 60 s: download, load and report go through the broker).
func waitTarget(t *testing.T, url, what string, ok func(hub.DeploymentTarget) bool) hub.DeploymentTarget {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var d hub.Deployment
		call(t, "GET", url, nil, &d, 200)
		if len(d.Targets) == 1 && ok(d.Targets[0]) {
			return d.Targets[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: targets %+v", what, d.Targets)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runAgent runs the real agent package with rec as its Server until the
// returned stop is called.
func runAgent(t *testing.T, en hub.Enrollment, dataDir string, rec *loadRecorder) (stop func()) {
	t.Helper()
	ag, err := agent.New(agent.Config{ID: en.AgentID, DataDir: dataDir, Broker: en.MQTTURL, Username: en.AgentID, Password: en.Secret,
		Endpoint: "http://127.0.0.1:8000", Capabilities: &agentv1.Capabilities{Kind: "edge"}, Heartbeat: time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RetryInterval: time.Second,
	}, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// TestDeploymentReachesRealAgent: a real hub and the real agent package
// (with a recording Server). A selector deployment made before the agent
// enrolls reaches it when it comes online; deploy show reports serving with
// the endpoint; an update moves it to the new version; a delete unloads it.
func TestDeploymentReachesRealAgent(t *testing.T) {
	s, _ := startHub(t, nil)
	base := "http://" + s.Addrs().HTTP
	wsURL := base + "/api/v1/workspaces/w"
	call(t, "POST", base+"/api/v1/workspaces", map[string]string{"name": "w"}, nil, 201)
	files := [][]byte{onnxtest.MLP(4, []int{8}, 3, 1), onnxtest.MLP(4, []int{8}, 3, 2)}
	var versions [2]hub.ModelVersion
	for i, f := range files {
		call(t, "POST", wsURL+"/models/clf/versions", f, &versions[i], 201)
	}
	call(t, "POST", wsURL+"/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Selector: map[string]string{"zone": "eu"}}, nil, 201)

	var tok hub.JoinToken
	call(t, "POST", base+"/api/v1/agents/tokens", map[string]any{"labels": map[string]string{"zone": "eu"}}, &tok, 201)
	var en hub.Enrollment
	call(t, "POST", base+"/api/v1/agents/enroll", hub.EnrollRequest{Token: tok.Token, Name: "edge-1",
		Capabilities: hub.Capabilities{Kind: hub.KindEdge, OS: "linux", Arch: "amd64"}}, &en, 201)

	rec := &loadRecorder{serving: map[string]string{}}
	stopAgent := runAgent(t, en, t.TempDir(), rec)
	t.Cleanup(stopAgent)

	dep := wsURL + "/deployments/fraud"
	got := waitTarget(t, dep, "serving v1", func(tg hub.DeploymentTarget) bool {
		return tg.State == hub.TargetServing && tg.ModelVersion == 1
	})
	want := hub.DeploymentTarget{Agent: en.AgentID, State: hub.TargetServing, ModelVersion: 1, Endpoint: "http://127.0.0.1:8000/v2/models/fraud"}
	if got != want {
		t.Errorf("target %+v, want %+v", got, want)
	}
	if s := rec.get("fraud"); s != "v1 "+versions[0].SHA256 {
		t.Errorf("agent serves %q, want v1 %s", s, versions[0].SHA256)
	}

	call(t, "PATCH", dep, hub.DeploymentUpdate{Model: "clf:2"}, nil, 200)
	waitTarget(t, dep, "serving v2", func(tg hub.DeploymentTarget) bool {
		return tg.State == hub.TargetServing && tg.ModelVersion == 2
	})
	if s := rec.get("fraud"); s != "v2 "+versions[1].SHA256 {
		t.Errorf("agent serves %q, want v2 %s", s, versions[1].SHA256)
	}
	// Version 2 is deployed: it cannot be deleted.
	call(t, "DELETE", wsURL+"/models/clf/versions/2?force=true", nil, nil, 409)

	call(t, "DELETE", dep, nil, nil, 204)
	deadline := time.Now().Add(60 * time.Second)
	for rec.get("fraud") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the agent still serves fraud after the delete: %q", rec.get("fraud"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeploymentGenerationSurvivesHubRestart: the agent applied generation
// N before the hub restarted; after the restart the hub pushes N again
// (ignored) and the next change is N+1, which the agent applies. Were
// generations restarted at 1, the agent would ignore the change and keep
// serving version 1.
func TestDeploymentGenerationSurvivesHubRestart(t *testing.T) {
	data, agentData := t.TempDir(), t.TempDir()
	run := func() (*Server, func()) {
		cfg := DefaultConfig()
		cfg.Data = data
		cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.ShutdownTimeout = 5 * time.Second
		s, err := New(cfg, nil)
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
	s, stopHub := run()
	base := "http://" + s.Addrs().HTTP
	wsURL := base + "/api/v1/workspaces/w"
	call(t, "POST", base+"/api/v1/workspaces", map[string]string{"name": "w"}, nil, 201)
	var versions [2]hub.ModelVersion
	for i := range versions {
		call(t, "POST", wsURL+"/models/clf/versions", onnxtest.MLP(4, []int{8}, 3, int64(i+1)), &versions[i], 201)
	}
	var tok hub.JoinToken
	call(t, "POST", base+"/api/v1/agents/tokens", map[string]any{}, &tok, 201)
	var en hub.Enrollment
	call(t, "POST", base+"/api/v1/agents/enroll", hub.EnrollRequest{Token: tok.Token, Name: "edge-1",
		Capabilities: hub.Capabilities{Kind: hub.KindEdge, OS: "linux", Arch: "amd64"}}, &en, 201)
	call(t, "POST", wsURL+"/deployments", hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Agents: []string{en.AgentID}}, nil, 201)
	rec := &loadRecorder{serving: map[string]string{}}
	stopAgent := runAgent(t, en, agentData, rec)
	dep := wsURL + "/deployments/fraud"
	waitTarget(t, dep, "serving v1", func(tg hub.DeploymentTarget) bool { return tg.State == hub.TargetServing && tg.ModelVersion == 1 })
	stopAgent()
	stopHub()

	s, _ = run()
	base = "http://" + s.Addrs().HTTP
	dep = base + "/api/v1/workspaces/w/deployments/fraud"
	en.MQTTURL = "tcp://" + s.Addrs().MQTT
	t.Cleanup(runAgent(t, en, agentData, rec))
	call(t, "PATCH", dep, hub.DeploymentUpdate{Model: "clf:2"}, nil, 200)
	waitTarget(t, dep, "serving v2 after the restart", func(tg hub.DeploymentTarget) bool {
		return tg.State == hub.TargetServing && tg.ModelVersion == 2
	})
	if got := rec.get("fraud"); got != "v2 "+versions[1].SHA256 {
		t.Errorf("agent serves %q, want v2 %s", got, versions[1].SHA256)
	}
}
