package agentcmd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
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
