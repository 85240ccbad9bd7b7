package agentcmd

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/testbench"
)

// hubJSON does one request against the hub's REST API and decodes the answer.
func hubJSON(t *testing.T, method, url string, body any, wantCode int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("%s %s: HTTP %d %s, want %d", method, url, resp.StatusCode, b, wantCode)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, url, b, err)
		}
	}
}

// TestRunEnrollsWithRealHub runs `atelier-agent run` against a real hub:
// a join token from the API, enrollment, the per-agent broker credential,
// presence and reported state (with the scoring endpoint) recorded by the
// hub; a reused token is refused with the hub's message.
func TestRunEnrollsWithRealHub(t *testing.T) {
	h := testbench.StartHub(t, testbench.HubConfig(t))
	var tok struct {
		Token string `json:"token"`
	}
	hubJSON(t, "POST", h.URL+"/api/v1/agents/tokens", map[string]any{"labels": map[string]string{"site": "lab"}}, http.StatusCreated, &tok)
	dir := t.TempDir()
	url, stderr, stop := startRun(t, []string{"run", "--hub", h.URL, "--join-token", tok.Token, "--data", dir,
		"--listen", "127.0.0.1:0", "--name", "edge-1", "--label", "floor=2"}, noEnv)
	creds, err := agent.LoadCredentials(dir)
	if err != nil || creds == nil {
		t.Fatalf("credentials: %v, %v", creds, err)
	}
	var a struct {
		Name         string            `json:"name"`
		Kind         string            `json:"kind"`
		State        string            `json:"state"`
		Endpoint     string            `json:"endpoint"`
		Labels       map[string]string `json:"labels"`
		Capabilities struct {
			OS                 string `json:"os"`
			ONNXRuntimeVersion string `json:"onnxruntime_version"`
			MemoryBytes        uint64 `json:"memory_bytes"`
		} `json:"capabilities"`
	}
	deadline := time.Now().Add(30 * time.Second) // deadlock guard only
	for {
		hubJSON(t, "GET", h.URL+"/api/v1/agents/"+creds.AgentID, nil, http.StatusOK, &a)
		if a.State == "online" && a.Endpoint == url {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub never saw the agent online with endpoint %s: %+v; agent stderr:\n%s", url, a, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.Name != "edge-1" || a.Kind != "edge" || a.Labels["site"] != "lab" || a.Labels["floor"] != "2" ||
		a.Capabilities.ONNXRuntimeVersion == "" || a.Capabilities.MemoryBytes == 0 {
		t.Errorf("hub's record of the agent: %+v", a)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}

	// The token is spent: enrolling another data directory with it fails
	// with the hub's own message.
	var errw strings.Builder
	code := Main(t.Context(), []string{"run", "--hub", h.URL, "--join-token", tok.Token, "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, io.Discard, &errw, noEnv)
	if code != 1 || !strings.Contains(errw.String(), "enrollment refused: HTTP 401") {
		t.Errorf("reused token: exit %d, stderr %q", code, errw.String())
	}
}

// inferMLP posts x to deployment at the agent's endpoint; it returns the
// HTTP status and the output.
func inferMLP(t *testing.T, endpoint, deployment string, x []float32) (int, []float32) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "input", "datatype": "FP32", "shape": []int{1, len(x)}, "data": x}}})
	resp, err := http.Post(endpoint+"/v2/models/"+deployment+"/infer", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Outputs) != 1 {
		t.Fatalf("infer answer: %v", err)
	}
	return resp.StatusCode, r.Outputs[0].Data
}

// waitOutput polls the agent's endpoint until deployment answers want
// (guarded; the rollout is asynchronous).
func waitOutput(t *testing.T, endpoint, deployment string, x, want []float32, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // deadlock guard only
	for {
		code, got := inferMLP(t, endpoint, deployment, x)
		if code == http.StatusOK && len(got) == len(want) {
			ok := true
			for i := range want {
				ok = ok && math.Abs(float64(got[i]-want[i])) <= 1e-4
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %v (last: HTTP %d %v); agent stderr:\n%s", deployment, want, code, got, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunServesHubDeployment: model registered in the real hub, agent
// enrolled with `atelier-agent run`, deployment created, updated to a new
// version (hot swap) and deleted, all checked over the agent's real HTTP
// endpoint.
func TestRunServesHubDeployment(t *testing.T) {
	h := testbench.StartHub(t, testbench.HubConfig(t))
	ctx := t.Context()
	c := client.New(h.URL)
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	const in, out = 4, 3
	hidden := []int{8}
	for seed := int64(1); seed <= 2; seed++ {
		file := onnxtest.MLP(in, hidden, out, seed)
		if _, err := c.RegisterModel(ctx, "ws", "mlp", bytes.NewReader(file), int64(len(file)), client.RegisterOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := c.CreateJoinToken(ctx, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	endpoint, stderr, stop := startRun(t, []string{"run", "--hub", h.URL, "--join-token", tok.Token, "--data", dir, "--listen", "127.0.0.1:0"}, noEnv)
	defer stop()
	creds, err := agent.LoadCredentials(dir)
	if err != nil || creds == nil {
		t.Fatalf("credentials: %v, %v", creds, err)
	}
	x := []float32{0.5, -1, 2, 0.25}

	if _, err := c.CreateDeployment(ctx, "ws", hub.DeploymentCreate{Name: "clf", Model: "mlp:1", Agents: []string{creds.AgentID}}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, endpoint, "clf", x, onnxtest.MLPOutput(in, hidden, out, 1, x), stderr)

	if _, err := c.UpdateDeployment(ctx, "ws", "clf", hub.DeploymentUpdate{Model: "mlp:2"}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, endpoint, "clf", x, onnxtest.MLPOutput(in, hidden, out, 2, x), stderr)

	if err := c.DeleteDeployment(ctx, "ws", "clf"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second) // deadlock guard only
	for {
		if code, _ := inferMLP(t, endpoint, "clf", x); code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clf still served after the deployment was deleted; agent stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
}
