package testbench

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub/server"
)

// HubConfig returns a hub configuration for tests: data in a fresh
// t.TempDir(), every listener on loopback with a port chosen by the kernel.
func HubConfig(t testing.TB) server.Config {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// Hub is a real hub server running in the test process.
type Hub struct {
	Server *server.Server
	// URL is the base URL of the REST API, e.g. http://127.0.0.1:41234.
	URL  string
	stop func()
}

// StartHub runs a real hub (store, blobs, broker, API) with cfg until the
// test ends or Stop is called, and fails the test if it does not start or
// does not shut down cleanly. Logs at warning level and above go to stderr.
func StartHub(t testing.TB, cfg server.Config) *Hub {
	t.Helper()
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
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
		t.Fatalf("hub did not start: %v", err)
	}
	var once sync.Once
	h := &Hub{Server: s, URL: "http://" + s.Addrs().HTTP}
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hub Run returned %v after cancel", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// Stop shuts the hub down and waits for it; calling it again does nothing.
func (h *Hub) Stop() { h.stop() }
