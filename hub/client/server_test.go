package client_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/testbench"
)

// startHub runs a real hub (store, blobs, broker, API) on loopback port 0
// with its data in a temporary directory, and returns a client of it.
func startHub(t testing.TB) *client.Client {
	t.Helper()
	return client.New(testbench.StartHub(t, testbench.HubConfig(t)).URL)
}

func TestAgainstHub(t *testing.T) {
	c := startHub(t)
	ctx := context.Background()

	if _, err := c.CreateWorkspace(ctx, "ws", "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateWorkspace(ctx, "ws", ""); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("duplicate workspace: %v, want ErrConflict", err)
	}
	if _, err := c.CreateWorkspace(ctx, "bad/name", ""); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad name: %v, want ErrInvalid", err)
	}
	if _, err := c.GetWorkspace(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown workspace: %v, want ErrNotFound", err)
	}
	if _, err := c.CreateExperiment(ctx, "ws", "exp"); err != nil {
		t.Fatal(err)
	}
	es, err := c.ListExperiments(ctx, "ws")
	if err != nil || len(es) != 1 || es[0].Name != "exp" {
		t.Fatalf("experiments %+v, %v", es, err)
	}

	r, err := c.CreateRun(ctx, "ws", hub.RunCreate{Experiment: "exp", Params: map[string]string{"lr": "0.1"}, Command: []string{"train"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.Status != hub.StatusQueued {
		t.Fatalf("new run %+v", r)
	}
	if err := c.SetParams(ctx, "ws", r.ID, map[string]string{"lr": "0.1", "bs": "32"}); err != nil {
		t.Fatalf("same param again: %v", err)
	}
	err = c.SetParams(ctx, "ws", r.ID, map[string]string{"lr": "0.2"})
	if !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), "write-once") {
		t.Errorf("changed param: %v, want ErrConflict saying write-once", err)
	}
	if err := c.SetTags(ctx, "ws", r.ID, map[string]string{"a/b": "1", "c": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTag(ctx, "ws", r.ID, "a/b"); err != nil {
		t.Fatalf("delete tag with a slash: %v", err)
	}

	// Batched metrics through the RunLogger.
	l := c.NewRunLogger("ws", r.ID, client.BatchOptions{MaxPoints: 10, Interval: time.Hour})
	for i := range 25 {
		l.Metric("train/loss", 1/float64(i+1), int64(i))
	}
	l.Metric("acc", 0.9, 24)
	l.Param("epochs", "1")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pts, err := c.GetMetrics(ctx, "ws", r.ID, "train/loss")
	if err != nil || len(pts) != 25 {
		t.Fatalf("train/loss series: %d points, %v", len(pts), err)
	}

	// Artifacts: paths with directories and characters that need escaping.
	content := bytes.Repeat([]byte("onnx"), 100_000)
	sum := sha256.Sum256(content)
	paths := []string{"outputs/model.onnx", "outputs/eval dir/report #1.txt", "outputs/ü?x"}
	for _, p := range paths {
		a, err := c.PutArtifact(ctx, "ws", r.ID, p, io.MultiReader(bytes.NewReader(content)), -1)
		if err != nil {
			t.Fatalf("put %q: %v", p, err)
		}
		if a.Path != p || a.Size != int64(len(content)) || a.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("put %q: got %+v", p, a)
		}
		var got bytes.Buffer
		if err := c.GetArtifact(ctx, "ws", r.ID, p, &got); err != nil {
			t.Fatalf("get %q: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), content) {
			t.Errorf("get %q: %d bytes differ from what was put", p, got.Len())
		}
	}
	arts, err := c.ListArtifacts(ctx, "ws", r.ID)
	if err != nil || len(arts) != len(paths) {
		t.Fatalf("artifacts %+v, %v", arts, err)
	}
	if err := c.GetArtifact(ctx, "ws", r.ID, "outputs/none", io.Discard); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing artifact: %v, want ErrNotFound", err)
	}
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	zw.Write([]byte("a tar would be here"))
	zw.Close()
	b, err := c.PutSnapshot(ctx, "ws", r.ID, bytes.NewReader(tgz.Bytes()), int64(tgz.Len()))
	if err != nil || b.Size != int64(tgz.Len()) {
		t.Fatalf("snapshot %+v, %v", b, err)
	}
	var snap bytes.Buffer
	if err := c.GetSnapshot(ctx, "ws", r.ID, &snap); err != nil || !bytes.Equal(snap.Bytes(), tgz.Bytes()) {
		t.Fatalf("snapshot back: %d bytes, %v", snap.Len(), err)
	}

	// Follow the logs while the run runs; the stream ends when it completes.
	if _, err := c.UpdateRun(ctx, "ws", r.ID, hub.RunUpdate{Status: hub.StatusRunning}); err != nil {
		t.Fatal(err)
	}
	if err := c.AppendLogs(ctx, "ws", r.ID, []hub.LogLine{{Stream: hub.Stdout, Text: "one"}}); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []hub.LogLine
	)
	first := make(chan struct{})
	streamed := make(chan error, 1)
	go func() {
		streamed <- c.StreamLogs(ctx, "ws", r.ID, 0, true, func(l hub.LogLine) error {
			mu.Lock()
			lines = append(lines, l)
			n := len(lines)
			mu.Unlock()
			if n == 1 {
				close(first)
			}
			return nil
		})
	}()
	<-first
	if err := c.AppendLogs(ctx, "ws", r.ID, []hub.LogLine{{Stream: hub.Stderr, Text: "two"}, {Stream: hub.Stdout, Text: "three"}}); err != nil {
		t.Fatal(err)
	}
	code := 0
	if _, err := c.UpdateRun(ctx, "ws", r.ID, hub.RunUpdate{Status: hub.StatusCompleted, ExitCode: &code}); err != nil {
		t.Fatal(err)
	}
	if err := <-streamed; err != nil {
		t.Fatalf("follow: %v", err)
	}
	mu.Lock()
	if len(lines) != 3 || lines[0].Text != "one" || lines[1].Stream != hub.Stderr || lines[2].Seq != 3 {
		t.Errorf("followed lines %+v", lines)
	}
	mu.Unlock()

	got, err := c.GetRun(ctx, "ws", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != hub.StatusCompleted || got.Params["epochs"] != "1" || got.Params["bs"] != "32" ||
		got.Metrics["acc"] != 0.9 || got.Metrics["train/loss"] != 1.0/25 || got.Tags["c"] != "2" || len(got.Tags) != 1 {
		t.Errorf("final run %+v", got)
	}
	if _, err := c.UpdateRun(ctx, "ws", r.ID, hub.RunUpdate{Status: hub.StatusRunning}); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("completed → running: %v, want ErrConflict", err)
	}

	runs, err := c.ListRuns(ctx, "ws", client.RunQuery{Experiment: "exp", Filter: "metrics.acc > 0.5", OrderBy: "metrics.acc:desc", Top: 5})
	if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
		t.Errorf("query: %+v, %v", runs, err)
	}
	if _, err := c.ListRuns(ctx, "ws", client.RunQuery{Filter: "metrics.acc >"}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad filter: %v, want ErrInvalid", err)
	}

	if err := c.DeleteWorkspace(ctx, "ws", false); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("delete non-empty: %v, want ErrConflict", err)
	}
	if err := c.DeleteWorkspace(ctx, "ws", true); err != nil {
		t.Fatal(err)
	}
	ws, err := c.ListWorkspaces(ctx)
	if err != nil || len(ws) != 0 {
		t.Errorf("after delete: %+v, %v", ws, err)
	}
}
