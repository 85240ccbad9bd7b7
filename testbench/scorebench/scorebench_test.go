package scorebench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunJSON runs the benchmark briefly on the tiny model and checks the
// report's shape (not its figures: no timed assertions).
func TestRunJSON(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--json", "--duration", "100ms", "--models", "tiny"}, &out); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"raw_ort_p50_us", "raw_ort_rps", "http_c1_p50_us", "http_c1_p99_us", "http_c8_rps", "tiny"} {
		if _, ok := got[k]; !ok {
			t.Errorf("report lacks %q: %s", k, out.String())
		}
	}
	if v, _ := got["http_c8_rps"].(float64); v <= 0 {
		t.Errorf("http_c8_rps = %v, want > 0", got["http_c8_rps"])
	}
}

func TestRunBadFlags(t *testing.T) {
	err := Run(context.Background(), []string{"--duration", "-1s"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "--duration") {
		t.Errorf("Run(--duration -1s) = %v, want an error naming --duration", err)
	}
}
