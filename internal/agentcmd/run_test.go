package agentcmd

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
)

// syncBuffer is a strings.Builder safe for a concurrent writer and reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) string { return "" }

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRunCommandLineErrors(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusGone)
		io.WriteString(w, `{"error":"join token expired at 2026-11-23T18:00:00Z","code":"token_expired"}`)
	}))
	defer refusing.Close()
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no data", []string{"run"}, 2, "--data DIR is required"},
		{"not enrolled", []string{"run", "--data", dir}, 2, "the first start needs --hub URL and --join-token"},
		{"no token", []string{"run", "--data", dir, "--hub", refusing.URL}, 2, "--join-token TOKEN (or $ATELIER_JOIN_TOKEN)"},
		{"bad label", []string{"run", "--data", dir, "--label", "nokey"}, 2, `--label "nokey": want KEY=VALUE`},
		{"idle below interval", []string{"run", "--data", dir, "--telemetry-interval", "30s", "--telemetry-idle-interval", "10s"}, 2,
			"--telemetry-idle-interval 10s: expected at least --telemetry-interval (30s)"},
		{"bad hub", []string{"run", "--data", dir, "--hub", "hub:8600", "--join-token", "t"}, 1, `hub URL "hub:8600"`},
		{"refused", []string{"run", "--data", dir, "--hub", refusing.URL, "--join-token", "t"}, 1,
			"enrollment refused: HTTP 410: join token expired at 2026-11-23T18:00:00Z (code token_expired)"},
		{"no onnx runtime", []string{"run", "--data", dir, "--ort-lib", "/nonexistent/libonnxruntime.so.1"}, 1,
			`--ort-lib "/nonexistent/libonnxruntime.so.1": onnx runtime library not found`},
		{"unreachable", []string{"run", "--data", dir, "--hub", "http://" + closedAddr(t), "--join-token", "t"}, 1, "hub unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errw strings.Builder
			code := Main(context.Background(), tc.args, &out, &errw, noEnv)
			if code != tc.code || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errw.String(), tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, agent.CredentialsFile)); !os.IsNotExist(err) {
		t.Errorf("credentials written by a failed enrollment: %v", err)
	}
}

// startRun runs `atelier-agent run args...` until the returned stop is
// called; it waits for the "listening on" line and returns the URL.
func startRun(t *testing.T, args []string, env func(string) string) (url string, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, &out, stderr, env) }()
	deadline := time.Now().Add(30 * time.Second) // deadlock guard, not a speed assertion
	for !strings.Contains(out.String(), "\n") {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("run exited %d before listening; stderr:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no listening line; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := strings.TrimSpace(out.String())
	url, ok := strings.CutPrefix(line, "listening on ")
	if !ok {
		cancel()
		t.Fatalf("first stdout line %q", line)
	}
	var once sync.Once
	var code int
	return url, stderr, func() int { // idempotent
		once.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}
}

func TestRunEnrollsOnceThenStartsFromCredentials(t *testing.T) {
	broker := "tcp://" + closedAddr(t) // the agent must serve without its broker
	var calls atomic.Int32
	var body map[string]any
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, `{"error":"join token already used","code":"token_used"}`)
			return
		}
		if r.URL.Path != agent.EnrollPath {
			t.Errorf("path %s", r.URL.Path)
		}
		json.NewDecoder(r.Body).Decode(&body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"agent_id":"a-7f3e","secret":"pw-1","mqtt_url":"`+broker+`"}`)
	}))
	defer hub.Close()
	dir := filepath.Join(t.TempDir(), "data")

	env := func(k string) string {
		if k == JoinTokenEnv {
			return "tok-from-env"
		}
		return ""
	}
	url, _, stop := startRun(t, []string{"run", "--hub", hub.URL, "--data", dir, "--listen", "127.0.0.1:0",
		"--name", "edge-1", "--label", "site=lab", "--label", "floor=2"}, env)
	resp, err := http.Get(url + "/v2/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("live: HTTP %d", resp.StatusCode)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if body["token"] != "tok-from-env" || body["name"] != "edge-1" {
		t.Errorf("enroll body %v", body)
	}
	if l, _ := body["labels"].(map[string]any); l["site"] != "lab" || l["floor"] != "2" {
		t.Errorf("labels %v", body["labels"])
	}
	if c, _ := body["capabilities"].(map[string]any); c["kind"] != "edge" || c["onnxruntime_version"] == "" {
		t.Errorf("capabilities %v", body["capabilities"])
	}
	creds, err := agent.LoadCredentials(dir)
	if err != nil || creds == nil {
		t.Fatalf("credentials: %v, %v", creds, err)
	}
	if creds.AgentID != "a-7f3e" || creds.Secret != "pw-1" || creds.MQTTURL != broker || creds.Hub != hub.URL {
		t.Errorf("credentials %+v", creds)
	}
	if fi, _ := os.Stat(filepath.Join(dir, agent.CredentialsFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v", fi.Mode().Perm())
	}

	// Second start: the stored credentials are used, the token ignored.
	url, stderr, stop := startRun(t, []string{"run", "--hub", hub.URL + "/", "--data", dir, "--listen", "127.0.0.1:0", "--join-token", "again",
		"--key", "k-primary"}, noEnv)
	// --key protects the scoring endpoint, as for `score`.
	for _, c := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer wrong", http.StatusUnauthorized}, {"Bearer k-primary", http.StatusOK}} {
		req, _ := http.NewRequest("GET", url+"/v2", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /v2 with %q: HTTP %d, want %d", c.auth, resp.StatusCode, c.want)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("second start: exit %d; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "join token ignored") {
		t.Errorf("no warning about the ignored token; stderr:\n%s", stderr.String())
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("hub enrollment called %d times, want 1", n)
	}

	// Another hub with these credentials is refused.
	var errw strings.Builder
	code := Main(context.Background(), []string{"run", "--hub", "http://other.example:8600", "--data", dir}, io.Discard, &errw, noEnv)
	if code != 2 || !strings.Contains(errw.String(), `holds the credentials of agent "a-7f3e" enrolled with hub `+hub.URL) {
		t.Errorf("other hub: exit %d, stderr %q", code, errw.String())
	}
}
