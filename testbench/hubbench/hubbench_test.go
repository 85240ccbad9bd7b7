package hubbench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunSmall runs the whole benchmark on a tiny data set and checks the
// report's shape (not the figures: no timed assertions in tests).
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	args := []string{"--json", "--points", "4000", "--clients", "2", "--runs", "30", "--metrics", "3", "--steps", "2", "--queries", "3", "--dir", t.TempDir()}
	if err := Run(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	for _, k := range []string{"metric_points_per_sec", "sqlite_points_per_sec", "best_run_query_ms"} {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v", k, got[k])
		}
	}
	out.Reset()
	if err := Run(context.Background(), []string{"--points", "2000", "--runs", "5", "--metrics", "2", "--steps", "1", "--queries", "2", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "best_run_query_ms") || !strings.Contains(out.String(), "aim / limit") {
		t.Errorf("table:\n%s", out.String())
	}
	if err := Run(context.Background(), []string{"--points", "10", "--batch", "100"}, &out); err == nil {
		t.Error("--points below --batch accepted")
	}
}
