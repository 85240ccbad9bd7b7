//go:build unix

package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondHubOnOneDataDirRefused: a second hub on a data directory in use
// fails at once with ErrDataLocked, naming the directory and the lock file,
// and leaves the first hub serving; once the first stops, the directory can
// be used again.
func TestSecondHubOnOneDataDirRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	first, stop := runHub(t, cfg)

	second, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = second.Run(ctx)
	lock := filepath.Join(cfg.Data, LockFile)
	if !errors.Is(err, ErrDataLocked) || !strings.Contains(err.Error(), "data directory "+cfg.Data+" is in use by another hub (it holds "+lock+")") {
		t.Fatalf("second Run: %v, want ErrDataLocked naming %s and %s", err, cfg.Data, lock)
	}
	if _, err := ReadAddrs(cfg.Data); err != nil {
		t.Fatalf("the first hub's address file is gone: %v", err)
	}
	select {
	case <-first.Ready():
	default:
		t.Fatal("first hub not ready")
	}

	stop()
	_, stop2 := runHub(t, cfg) // fails the test if the lock was not released
	stop2()
}
