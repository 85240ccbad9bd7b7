package rolloutbench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunSmall runs the whole benchmark at a small size (3 agents, a
// 0.6 MiB model, two rounds) and checks the report's shape, not its speed.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--agents", "3", "--model-mib", "0.6", "--rounds", "2", "--json", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Agents != 3 || r.Chunks != 3 || r.ModelMiB < 0.55 || r.ModelMiB > 0.65 {
		t.Fatalf("agents %d, chunks %d, model %.3f MiB; want 3, 3, ~0.6", r.Agents, r.Chunks, r.ModelMiB)
	}
	if !(r.RolloutSeconds > 0) || !(r.LoadedSeconds > 0) || !(r.RawFanoutSeconds > 0) || !(r.RawFanoutQoS0Seconds > 0) {
		t.Fatalf("implausible times: %+v", r)
	}
	if r.Rounds != 2 || len(r.RolloutSamples) != 2 || len(r.LoadedSamples) != 2 || len(r.RawSamples) != 2 || len(r.RawQoS0Samples) != 2 {
		t.Fatalf("rounds %d, samples %v %v %v %v; want 2 of each", r.Rounds, r.RolloutSamples, r.LoadedSamples, r.RawSamples, r.RawQoS0Samples)
	}
	if want := r.RolloutSeconds / min(r.RawFanoutSeconds, r.RawFanoutQoS0Seconds); r.Ratio != want {
		t.Fatalf("ratio %v, want %v", r.Ratio, want)
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agents", "0"}, "--agents 0: want 1-10000"},
		{[]string{"--model-mib", "-1"}, "--model-mib -1: want above 0 and at most 1024"},
		{[]string{"--rounds", "0"}, "--rounds 0: want 1-100"},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		err := Run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
