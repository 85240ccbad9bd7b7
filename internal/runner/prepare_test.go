package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestSubmitPrepare(t *testing.T) {
	dir := writeTree(t, map[string]string{"main.sh": "cat in/data.txt; echo \"env=$INPUT\""})
	h := newMemHub()
	opts := testOptions(t, dir, "sh", "main.sh")
	var seen string
	opts.Prepare = func(ctx context.Context, work string) ([]string, error) {
		seen = work
		p := filepath.Join(work, "in", "data.txt")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		return []string{"INPUT=" + p}, os.WriteFile(p, []byte("rows\n"), 0o644)
	}
	var stdout syncBuffer
	code, err := Submit(context.Background(), h, opts, &stdout, &syncBuffer{}, nil)
	if code != 0 || err != nil || h.run.Status != hub.StatusCompleted {
		t.Fatalf("code %d, err %v, status %s", code, err, h.run.Status)
	}
	want := "rows\nenv=" + filepath.Join(seen, "in", "data.txt") + "\n"
	if seen == "" || stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}

	// A failing Prepare fails the run before the command starts.
	h = newMemHub()
	opts = testOptions(t, dir, "sh", "-c", "echo started")
	opts.Prepare = func(context.Context, string) ([]string, error) { return nil, errors.New("no such dataset") }
	stdout = syncBuffer{}
	code, err = Submit(context.Background(), h, opts, &stdout, &syncBuffer{}, nil)
	if code != 1 || err == nil || !strings.Contains(err.Error(), "prepare working copy: no such dataset") ||
		h.run.Status != hub.StatusFailed || !strings.Contains(h.run.Error, "no such dataset") || stdout.String() != "" {
		t.Errorf("code %d, err %v, run %s %q, stdout %q; want failed before the command", code, err, h.run.Status, h.run.Error, stdout.String())
	}
}
