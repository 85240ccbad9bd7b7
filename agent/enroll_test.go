package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCredentialsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if c, err := LoadCredentials(dir); c != nil || err != nil {
		t.Fatalf("LoadCredentials on a fresh dir = %v, %v; want nil, nil", c, err)
	}
	want := &Credentials{AgentID: "edge-1", Secret: "s3cret", MQTTURL: "tcp://127.0.0.1:1883",
		Hub: "http://127.0.0.1:8600", EnrolledAt: time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC)}
	if err := SaveCredentials(dir, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
	// Overwrite: the new content replaces the old, no temp file remains.
	want.Secret = "rotated"
	if err := SaveCredentials(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadCredentials(dir); got.Secret != "rotated" {
		t.Errorf("secret after overwrite %q, want rotated", got.Secret)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("data dir holds %v, want only %s", names, CredentialsFile)
	}
}

func TestSaveCredentialsRefusesInvalidAndKeepsOld(t *testing.T) {
	dir := t.TempDir()
	good := &Credentials{AgentID: "edge-1", Secret: "x", MQTTURL: "tcp://h:1883", Hub: "http://h"}
	if err := SaveCredentials(dir, good); err != nil {
		t.Fatal(err)
	}
	bad := *good
	bad.AgentID = "Edge_1"
	if err := SaveCredentials(dir, &bad); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("SaveCredentials(bad id) = %v, want ErrInvalidCredentials", err)
	}
	if got, err := LoadCredentials(dir); err != nil || got.AgentID != "edge-1" {
		t.Errorf("after a refused save: %v, %v; want the old credentials", got, err)
	}
}

func TestLoadCredentialsInvalid(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not json", "{", "unexpected EOF"},
		{"unknown field", `{"agent_id":"a","secret":"s","mqtt_url":"tcp://h:1","extra":1}`, `unknown field "extra"`},
		{"no secret", `{"agent_id":"a","mqtt_url":"tcp://h:1"}`, "secret is empty"},
		{"bad id", `{"agent_id":"A/B","secret":"s","mqtt_url":"tcp://h:1"}`, `agent_id "A/B"`},
		{"bad url", `{"agent_id":"a","secret":"s","mqtt_url":"http://h:1"}`, `mqtt_url "http://h:1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, CredentialsFile), []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadCredentials(dir)
			if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadCredentials = %v; want ErrInvalidCredentials mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		err      string
	}{
		{"typical", "MemTotal:       16318480 kB\nMemFree:  1 kB\n", 16318480 * 1024, ""},
		{"not first", "Foo: 1 kB\nMemTotal: 2 kB\n", 2048, ""},
		{"missing", "MemFree: 1 kB\n", 0, "no MemTotal line"},
		{"no unit", "MemTotal: 12\n", 0, `want "MemTotal: N kB"`},
		{"not a number", "MemTotal: x kB\n", 0, `MemTotal "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMemTotal(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMemTotal = %d, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseMemTotal = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestDetectCapabilities(t *testing.T) {
	c := DetectCapabilities("edge", "1.24.1", "v0.1.0")
	if c.GetKind() != "edge" || c.GetOs() != runtime.GOOS || c.GetArch() != runtime.GOARCH ||
		c.GetCpus() != uint32(runtime.NumCPU()) || c.GetOnnxruntimeVersion() != "1.24.1" || c.GetAgentVersion() != "v0.1.0" {
		t.Errorf("DetectCapabilities = %v", c)
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := ParseMemTotal(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.GetMemoryBytes() != want || want < 64<<20 {
		t.Errorf("memory_bytes %d, want MemTotal %d (and at least 64 MiB)", c.GetMemoryBytes(), want)
	}
}

// enrollHub is an httptest hub checking the exact enrollment contract.
func enrollHub(t *testing.T, status int, answer string) (*httptest.Server, *map[string]any) {
	t.Helper()
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/agents/enroll" {
			t.Errorf("request %s %s, want POST /api/v1/agents/enroll", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestEnrollContract(t *testing.T) {
	srv, got := enrollHub(t, http.StatusCreated, `{"agent_id":"a1b2","secret":"pw","mqtt_url":"tcp://127.0.0.1:1883"}`)
	req := EnrollRequest{Token: "tok", Name: "edge-1", Labels: map[string]string{"site": "lab"},
		Capabilities: CapabilitiesJSON(DetectCapabilities("edge", "1.24.1", "dev"))}
	c, err := Enroll(context.Background(), nil, srv.URL+"/", req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.AgentID != "a1b2" || c.Secret != "pw" || c.MQTTURL != "tcp://127.0.0.1:1883" || c.Hub != srv.URL || c.EnrolledAt.IsZero() {
		t.Errorf("credentials %+v", c)
	}
	body := *got
	if body["token"] != "tok" || body["name"] != "edge-1" || !reflect.DeepEqual(body["labels"], map[string]any{"site": "lab"}) {
		t.Errorf("request body %v", body)
	}
	caps, _ := body["capabilities"].(map[string]any)
	wantKeys := []string{"arch", "agent_version", "cpus", "kind", "memory_bytes", "onnxruntime_version", "os"}
	for _, k := range wantKeys {
		if _, ok := caps[k]; !ok {
			t.Errorf("capabilities lack %q: %v", k, caps)
		}
	}
	if len(caps) != len(wantKeys) || caps["kind"] != "edge" || caps["os"] != runtime.GOOS || caps["cpus"] != float64(runtime.NumCPU()) {
		t.Errorf("capabilities %v", caps)
	}
}

func TestEnrollErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		answer string
		is     error
		want   string
	}{
		{"used token", 410, `{"error":"join token already used","code":"token_used"}`, ErrEnrollRefused, "HTTP 410: join token already used (code token_used)"},
		{"unknown token", 401, `{"error":"unknown join token","code":"unauthenticated"}`, ErrEnrollRefused, "unknown join token"},
		{"plain text 4xx", 400, "bad request\n", ErrEnrollRefused, "HTTP 400: bad request"},
		{"server error", 500, `{"error":"database locked","code":"internal"}`, ErrEnrollFailed, "HTTP 500: database locked"},
		{"malformed 201", 201, `{"agent_id":"x"`, ErrEnrollFailed, "not the expected JSON"},
		{"201 without secret", 201, `{"agent_id":"x","mqtt_url":"tcp://h:1"}`, ErrEnrollFailed, "secret is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := enrollHub(t, tc.status, tc.answer)
			_, err := Enroll(context.Background(), nil, srv.URL, EnrollRequest{Token: "t", Name: "n"}, nil)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Enroll = %v; want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := Enroll(context.Background(), nil, url, EnrollRequest{Token: "t", Name: "n"}, nil)
		if !errors.Is(err, ErrHubUnreachable) || !strings.Contains(err.Error(), url+EnrollPath) {
			t.Errorf("Enroll = %v; want ErrHubUnreachable naming %s", err, url+EnrollPath)
		}
	})
	t.Run("bad hub url", func(t *testing.T) {
		_, err := Enroll(context.Background(), nil, "hub.example:8600", EnrollRequest{Token: "t"}, nil)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `hub URL "hub.example:8600"`) {
			t.Errorf("Enroll = %v", err)
		}
	})
	t.Run("no token", func(t *testing.T) {
		_, err := Enroll(context.Background(), nil, "http://127.0.0.1:1", EnrollRequest{}, nil)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "empty join token") {
			t.Errorf("Enroll = %v", err)
		}
	})
}

// FuzzEnrollAnswer: whatever the hub answers, enrollment either yields
// credentials that validate or an error of one of the enrollment kinds.
func FuzzEnrollAnswer(f *testing.F) {
	f.Add(201, []byte(`{"agent_id":"a1","secret":"s","mqtt_url":"tcp://h:1883"}`))
	f.Add(201, []byte(`{"agent_id":"A","secret":"s","mqtt_url":"tcp://h:1883"}`))
	f.Add(401, []byte(`{"error":"unknown join token","code":"unauthenticated"}`))
	f.Add(500, []byte("\xff\xfe oops"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		c, err := parseEnrollAnswer(status, body, "http://hub")
		if err != nil {
			if c != nil || !(errors.Is(err, ErrEnrollRefused) || errors.Is(err, ErrEnrollFailed)) {
				t.Fatalf("parseEnrollAnswer(%d, %q) = %v, %v", status, body, c, err)
			}
			return
		}
		if status != http.StatusCreated {
			t.Fatalf("credentials from HTTP %d", status)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("credentials that do not validate: %v", err)
		}
	})
}
