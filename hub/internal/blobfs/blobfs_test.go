package blobfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestPutOpenDedupLimit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	want := hub.Blob{SHA256: hex.EncodeToString(sum[:]), Size: 5}
	for range 2 {
		b, err := s.Put(ctx, strings.NewReader("hello"), 5)
		if err != nil || b != want {
			t.Fatalf("Put = %+v, %v; want %+v", b, err, want)
		}
	}
	f, b, err := s.Open(ctx, want.SHA256)
	if err != nil || b != want {
		t.Fatalf("Open = %+v, %v", b, err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != "hello" {
		t.Errorf("content %q", got)
	}
	if _, err := s.Put(ctx, strings.NewReader("hello!"), 5); !errors.Is(err, hub.ErrTooLarge) || !strings.Contains(err.Error(), "5 bytes") {
		t.Errorf("oversized Put: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
	n := 0
	filepath.WalkDir(filepath.Join(dir, "sha256"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d blob files, want 1 (deduplicated, nothing of the refused put)", n)
	}
	if _, _, err := s.Open(ctx, strings.Repeat("0", 64)); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("Open missing: %v", err)
	}
	if _, _, err := s.Open(ctx, "../../etc/passwd"); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("Open bad address: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, strings.NewReader("x"), 5); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx: %v", err)
	}
}
