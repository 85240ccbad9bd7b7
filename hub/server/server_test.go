package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHub runs a hub on loopback with free ports in a temp dir; it is
// stopped (and Run's result checked) at cleanup.
func startHub(t *testing.T, mod func(*Config)) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Data, AddrFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still present after shutdown: %v", AddrFile, err)
		}
	})
	return s, cfg.Data
}

func TestRunWritesAddrFileAndServes(t *testing.T) {
	s, data := startHub(t, nil)
	a := s.Addrs()
	for name, addr := range map[string]string{"http": a.HTTP, "mqtt": a.MQTT, "nats": a.NATS} {
		if addr == "" || strings.HasSuffix(addr, ":0") {
			t.Errorf("%s address %q is not a bound address", name, addr)
		}
	}
	got, err := ReadAddrs(data)
	if err != nil {
		t.Fatal(err)
	}
	if got != a {
		t.Errorf("hub.addr = %+v, Addrs() = %+v", got, a)
	}
	resp, err := http.Get("http://" + a.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body["status"] != "ok" {
		t.Errorf("GET /healthz = %d %v %v", resp.StatusCode, body, err)
	}
}

// TestShutdownEndsFollowAndDrains: a log follower and the server's Run
// both end when ctx is canceled; the data survives a restart on the same
// directory.
func TestShutdownEndsFollowAndRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	run := func() (context.CancelFunc, chan error, string) {
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
			t.Fatalf("Run: %v", err)
		}
		return cancel, done, "http://" + s.Addrs().HTTP
	}
	cancel, done, base := run()
	post := func(base, path, body string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s = %d", path, resp.StatusCode)
		}
	}
	post(base, "/api/v1/workspaces", `{"name":"w"}`)
	resp, err := http.Post(base+"/api/v1/workspaces/w/runs", "application/json", strings.NewReader(`{"experiment":"e"}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	post(base, "/api/v1/workspaces/w/runs/"+r.ID+"/logs", `{"lines":[{"text":"hi"}]}`)

	follow, err := http.Get(base + "/api/v1/workspaces/w/runs/" + r.ID + "/logs?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Body.Close()
	line := make([]byte, 1)
	if _, err := follow.Body.Read(line); err != nil { // the stream is open
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if _, err := io.ReadAll(follow.Body); err != nil {
		t.Errorf("follow stream did not end cleanly: %v", err)
	}

	cancel, done, base = run()
	defer func() { cancel(); <-done }()
	resp, err = http.Get(base + "/api/v1/workspaces/w/runs/" + r.ID + "/logs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"text":"hi"`) {
		t.Errorf("after restart logs = %q", b)
	}
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestPprofOptIn: the runtime profiles answer under /debug/pprof/ only
// when Config.Pprof is set.
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		s, _ := startHub(t, func(c *Config) { c.Pprof = on })
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
			resp, err := http.Get("http://" + s.Addrs().HTTP + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if resp.StatusCode != want || on && len(body) == 0 {
				t.Errorf("pprof %v: GET %s = %d with %d bytes, want %d", on, path, resp.StatusCode, len(body), want)
			}
		}
	}
}
