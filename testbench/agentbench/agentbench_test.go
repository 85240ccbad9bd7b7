package agentbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
)

// TestRunSmall runs the whole benchmark at a small size (40 requests, a
// 1 s settle) and checks the report's shape and sanity and that every
// process it started is gone, not how much memory anything takes.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--requests", "40", "--concurrency", "2", "--settle", "1s", "--json", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Requests != 40 || r.Concurrency != 2 || r.SettleSeconds != 1 || r.ModelBytes <= 0 {
		t.Fatalf("requests %d, concurrency %d, settle %v, model %d bytes; want 40, 2, 1, > 0", r.Requests, r.Concurrency, r.SettleSeconds, r.ModelBytes)
	}
	// The sample model gets most held-out rows right; a wrong model, or
	// answers from something else, would not.
	if r.Correct < r.Requests/2 || r.Correct > r.Requests {
		t.Errorf("%d of %d answers correct, want more than half", r.Correct, r.Requests)
	}
	for _, m := range []struct {
		name string
		v    float64
	}{
		{"agent_idle_rss_mib", r.AgentIdleRSSMiB},
		{"agent_idle_peak_mib", r.AgentIdlePeakMiB},
		{"agent_loaded_rss_mib", r.AgentLoadedRSSMiB},
		{"agent_serving_rss_mib", r.AgentServingRSSMiB},
		{"agent_peak_rss_mib", r.AgentPeakRSSMiB},
		{"ort_floor_rss_mib", r.ORTFloorRSSMiB},
		{"ort_floor_peak_mib", r.ORTFloorPeakMiB},
	} {
		if !(m.v > 1 && m.v < 2048) {
			t.Errorf("%s = %v, want 1-2048 MiB", m.name, m.v)
		}
	}
	for _, p := range []struct {
		name               string
		rss, peak, an, fil float64
	}{
		{"agent idle", r.AgentIdleRSSMiB, r.AgentIdlePeakMiB, r.AgentIdleAnonMiB, r.AgentIdleFileMiB},
		{"agent serving", r.AgentServingRSSMiB, r.AgentPeakRSSMiB, r.AgentServingAnonMiB, r.AgentServingFileMiB},
		{"ort floor", r.ORTFloorRSSMiB, r.ORTFloorPeakMiB, r.ORTFloorAnonMiB, r.ORTFloorFileMiB},
	} {
		if p.peak < p.rss || p.an <= 0 || p.fil <= 0 || p.an+p.fil > p.rss+0.01 {
			t.Errorf("%s: rss %v, peak %v, anon %v, file %v: want peak >= rss and anon, file > 0 within rss", p.name, p.rss, p.peak, p.an, p.fil)
		}
	}
	// Serving holds ONNX Runtime and the model, which idle does not, and
	// everything the floor process holds.
	if !r.ORTMappedServing {
		t.Error("ort_mapped_serving false: the serving agent does not map ONNX Runtime")
	}
	if r.AgentLoadedRSSMiB <= r.AgentIdleRSSMiB || r.AgentServingRSSMiB <= r.AgentIdleRSSMiB || r.AgentServingRSSMiB < r.ORTFloorRSSMiB {
		t.Errorf("loaded %v MiB and serving %v MiB, want both above idle %v, serving at least the floor %v",
			r.AgentLoadedRSSMiB, r.AgentServingRSSMiB, r.AgentIdleRSSMiB, r.ORTFloorRSSMiB)
	}
	if r.AgentPeakRSSMiB < r.AgentIdlePeakMiB {
		t.Errorf("peak %v MiB below the idle peak %v", r.AgentPeakRSSMiB, r.AgentIdlePeakMiB)
	}
	if want := r.AgentServingRSSMiB - r.ORTFloorRSSMiB; r.AgentServingOverheadMiB != want {
		t.Errorf("agent_serving_overhead_mib %v, want serving - floor = %v", r.AgentServingOverheadMiB, want)
	}
	if r.AimIdleMiB != AimIdleMiB || r.WithinAim != (r.AgentIdleRSSMiB < AimIdleMiB) {
		t.Errorf("within_aim %v for %v MiB against aim %v", r.WithinAim, r.AgentIdleRSSMiB, r.AimIdleMiB)
	}
	// Every process was waited for, so its pid no longer exists (it could
	// be reused by now, but not within this test on a quiet machine).
	for name, pid := range map[string]int{"hub": r.HubPID, "agent": r.AgentPID, "ortfloor": r.FloorPID} {
		if pid <= 0 {
			t.Errorf("%s pid %d", name, pid)
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s pid %d after Run: kill 0 gave %v, want ESRCH", name, pid, err)
		}
	}
}

// TestTable checks the table's rows: one per figure, its value, and the
// aim beside the idle figure.
func TestTable(t *testing.T) {
	r := Result{Requests: 10, Concurrency: 1, AgentIdleRSSMiB: 25, AgentLoadedRSSMiB: 45, AgentServingRSSMiB: 50, AgentPeakRSSMiB: 51,
		ORTFloorRSSMiB: 30, AgentServingOverheadMiB: 20, AimIdleMiB: AimIdleMiB, WithinAim: false, ORTMappedServing: true}
	var out bytes.Buffer
	if err := table(&out, r); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	for name, want := range map[string]string{
		"agent_idle_rss_mib": "25.0", "agent_loaded_rss_mib": "45.0", "agent_serving_rss_mib": "50.0", "agent_peak_rss_mib": "51.0",
		"ort_floor_rss_mib": "30.0", "agent_serving_overhead_mib": "20.0", "ort_mapped_idle": "false",
	} {
		if rows[name] != want {
			t.Errorf("row %s = %q, want %q\n%s", name, rows[name], want, out.String())
		}
	}
	if want := "aim < 20 (Greengrass 96, KubeEdge edgecore ~70): ABOVE the aim"; !strings.Contains(out.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--requests", "0"}, "--requests 0: want 1-1000000"},
		{[]string{"--concurrency", "0"}, "--concurrency 0: want 1-256"},
		{[]string{"--settle", "-1s"}, "--settle -1s: want 0-10m"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		err := Run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
