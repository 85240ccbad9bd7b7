package sqlite

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	st, err := Open(context.Background(), Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateWorkspace(context.Background(), "w", ""); err != nil {
		t.Fatal(err)
	}
	return st, path
}

func TestStatusTransitions(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	for _, tc := range []struct {
		name string
		path []hub.RunStatus // statuses applied in order after creation (queued)
		ok   bool
	}{
		{"queued→running→completed", []hub.RunStatus{"running", "completed"}, true},
		{"queued→failed", []hub.RunStatus{"failed"}, true},
		{"queued→canceled", []hub.RunStatus{"canceled"}, true},
		{"running→running (retry)", []hub.RunStatus{"running", "running"}, true},
		{"completed→completed (retry)", []hub.RunStatus{"completed", "completed"}, true},
		{"running→queued", []hub.RunStatus{"running", "queued"}, false},
		{"completed→running", []hub.RunStatus{"completed", "running"}, false},
		{"failed→completed", []hub.RunStatus{"failed", "completed"}, false},
		{"bogus", []hub.RunStatus{"paused"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.path {
				got, err := st.UpdateRun(ctx, "w", r.ID, hub.RunUpdate{Status: s})
				last := i == len(tc.path)-1
				if !last || tc.ok {
					if err != nil {
						t.Fatalf("step %d to %s: %v", i, s, err)
					}
					if got.Status != s {
						t.Fatalf("status %s, want %s", got.Status, s)
					}
					continue
				}
				if err == nil || !(errors.Is(err, hub.ErrConflict) || errors.Is(err, hub.ErrInvalid)) {
					t.Fatalf("step %d to %s: err = %v, want conflict or invalid", i, s, err)
				}
				after, _ := st.GetRun(ctx, "w", r.ID)
				if i > 0 && after.Status != tc.path[i-1] {
					t.Errorf("refused transition changed status to %s", after.Status)
				}
			}
		})
	}
}

func TestParamsWriteOnce(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	r, err := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e", Params: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		params map[string]string
		err    error
	}{
		{"same value again", map[string]string{"a": "1"}, nil},
		{"new key", map[string]string{"b": "2"}, nil},
		{"changed value with a new key", map[string]string{"c": "3", "a": "9"}, hub.ErrConflict},
		{"bad key", map[string]string{"": "x"}, hub.ErrInvalid},
		{"long value", map[string]string{"d": strings.Repeat("x", hub.MaxValueLen+1)}, hub.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.SetParams(ctx, "w", r.ID, tc.params)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	var pc *hub.ParamConflictError
	_, err = st.SetParams(ctx, "w", r.ID, map[string]string{"a": "9"})
	if !errors.As(err, &pc) || pc.Key != "a" || pc.Old != "1" || pc.New != "9" {
		t.Errorf("conflict error = %#v", err)
	}
	got, _ := st.GetRun(ctx, "w", r.ID)
	if len(got.Params) != 2 || got.Params["a"] != "1" || got.Params["b"] != "2" {
		t.Errorf("params = %v (the refused write must leave nothing, not even key c)", got.Params)
	}
}

func TestLatestMetric(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	r, _ := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		pts  []hub.MetricPoint
		want float64
	}{
		{"first", []hub.MetricPoint{{Name: "m", Value: 1, Step: 5, Time: t0}}, 1},
		{"lower step does not win", []hub.MetricPoint{{Name: "m", Value: 2, Step: 4, Time: t0.Add(time.Hour)}}, 1},
		{"same step, later time wins", []hub.MetricPoint{{Name: "m", Value: 3, Step: 5, Time: t0.Add(time.Second)}}, 3},
		{"within a batch the highest step wins", []hub.MetricPoint{{Name: "m", Value: 7, Step: 9, Time: t0}, {Name: "m", Value: 6, Step: 8, Time: t0.Add(time.Hour)}}, 7},
	} {
		if err := st.AppendMetrics(ctx, "w", r.ID, tc.pts); err != nil {
			t.Fatal(err)
		}
		got, _ := st.GetRun(ctx, "w", r.ID)
		if got.Metrics["m"] != tc.want {
			t.Errorf("%s: latest = %v, want %v", tc.name, got.Metrics["m"], tc.want)
		}
	}
	// An exact duplicate point is stored once (retries are idempotent).
	dup := []hub.MetricPoint{{Name: "d", Value: 1, Step: 1, Time: t0}}
	for range 2 {
		if err := st.AppendMetrics(ctx, "w", r.ID, dup); err != nil {
			t.Fatal(err)
		}
	}
	if pts, _ := st.Metrics(ctx, "w", r.ID, "d"); len(pts) != 1 {
		t.Errorf("duplicate stored %d times", len(pts))
	}
}

// TestGroupCommitIsolatesFailures sends concurrent batches, some to a run
// that does not exist or with a bad value; each caller gets its own
// outcome and the good batches are all stored.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	r, _ := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := r.ID
			if i%4 == 1 {
				id = "missing"
			}
			pts := make([]hub.MetricPoint, 100)
			for j := range pts {
				pts[j] = hub.MetricPoint{Name: "m", Step: int64(i*100 + j), Value: 1}
			}
			errs[i] = st.AppendMetrics(ctx, "w", id, pts)
		}()
	}
	wg.Wait()
	good := 0
	for i, err := range errs {
		if i%4 == 1 {
			if !errors.Is(err, hub.ErrNotFound) {
				t.Errorf("batch %d to a missing run: %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
		good++
	}
	pts, _ := st.Metrics(ctx, "w", r.ID, "m")
	if len(pts) != good*100 {
		t.Errorf("%d points stored, want %d", len(pts), good*100)
	}
}

func TestImportRunsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	_, err := st.ImportRuns(ctx, "w", []hub.ImportRun{
		{RunCreate: hub.RunCreate{Experiment: "e"}, Metrics: []hub.MetricPoint{{Name: "m", Value: 1}}},
		{RunCreate: hub.RunCreate{Experiment: "e", ParentID: "missing"}},
	})
	if !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), "runs[1]") {
		t.Fatalf("err = %v", err)
	}
	if runs, _ := st.ListRuns(ctx, "w", hub.RunQuery{}); len(runs) != 0 {
		t.Errorf("%d runs left by a failed import", len(runs))
	}
}

func TestDeleteWorkspaceForce(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	r, _ := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e", Params: map[string]string{"a": "1"}})
	st.AppendMetrics(ctx, "w", r.ID, []hub.MetricPoint{{Name: "m", Value: 1}})
	st.AppendLogs(ctx, "w", r.ID, []hub.LogLine{{Stream: hub.Stdout, Text: "x"}})
	if err := st.DeleteWorkspace(ctx, "w", false); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("delete non-empty: %v", err)
	}
	if err := st.DeleteWorkspace(ctx, "w", true); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"runs", "experiments", "metrics", "latest_metrics", "params", "logs"} {
		var n int
		if err := st.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows left (%v)", table, n, err)
		}
	}
}

func TestReopenAndClose(t *testing.T) {
	ctx := context.Background()
	st, path := openTest(t)
	st.Close()
	if err := st.AppendMetrics(ctx, "w", "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("append on closed store: %v", err)
	}
	st2, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	var v int
	st2.DB().QueryRow("PRAGMA user_version").Scan(&v)
	if v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	if _, err := st2.GetWorkspace(ctx, "w"); err != nil {
		t.Errorf("workspace lost on reopen: %v", err)
	}
	var mode string
	st2.DB().QueryRow("PRAGMA journal_mode").Scan(&mode)
	var sync, fk int
	st2.DB().QueryRow("PRAGMA synchronous").Scan(&sync)
	st2.DB().QueryRow("PRAGMA foreign_keys").Scan(&fk)
	if mode != "wal" || sync != 2 || fk != 1 {
		t.Errorf("journal_mode=%s synchronous=%d foreign_keys=%d, want wal 2 (FULL) 1", mode, sync, fk)
	}
}
