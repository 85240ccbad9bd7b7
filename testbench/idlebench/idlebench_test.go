package idlebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestRunSmall runs the whole benchmark at a small size (20 agents, a 1 s
// heartbeat, 2 s measured) and checks the report's shape and that the hub
// process is gone, not how fast anything is.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--agents", "20", "--seconds", "2", "--heartbeat", "1s", "--json", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Agents != 20 || r.AgentsOnline != 20 || r.HeartbeatSeconds != 1 {
		t.Fatalf("agents %d, online %d, heartbeat %v; want 20, 20, 1", r.Agents, r.AgentsOnline, r.HeartbeatSeconds)
	}
	if r.Seconds < 2 || r.Seconds > 60 {
		t.Fatalf("measured %v s, want about 2", r.Seconds)
	}
	if r.HubCPUSeconds < 0 || r.HubCPUCores < 0 || r.HubCPUCores > float64(runtime.NumCPU()) {
		t.Fatalf("hub cpu %v s = %v cores, want between 0 and %d cores", r.HubCPUSeconds, r.HubCPUCores, runtime.NumCPU())
	}
	if want := r.HubCPUSeconds / r.Seconds; r.HubCPUCores != want {
		t.Fatalf("hub_cpu_cores %v, want hub_cpu_seconds/seconds = %v", r.HubCPUCores, want)
	}
	if r.WithinAim != (r.HubCPUCores < AimCores) || r.AimCores != AimCores {
		t.Fatalf("within_aim %v for %v cores against aim %v", r.WithinAim, r.HubCPUCores, r.AimCores)
	}
	if r.HubRSSMiB < 1 || r.HubRSSMiB > 4096 {
		t.Fatalf("hub rss %v MiB, want 1-4096", r.HubRSSMiB)
	}
	if r.ClkTck <= 0 || r.HubPID <= 0 || r.HubPID == os.Getpid() {
		t.Fatalf("clk_tck %d, hub pid %d (bench pid %d)", r.ClkTck, r.HubPID, os.Getpid())
	}
	// The hub was waited for, so its pid no longer exists (it could be
	// reused by now, but not within this test on a quiet machine).
	if err := syscall.Kill(r.HubPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("hub pid %d after Run: kill 0 gave %v, want ESRCH", r.HubPID, err)
	}
}

func TestRunTable(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--agents", "2", "--seconds", "1", "--heartbeat", "1s", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hub_cpu_cores", "aim < 0.05", "hub_rss_mib"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	var found bool
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "agents_online" {
			found = f[1] == "2"
		}
	}
	if !found {
		t.Errorf("table has no \"agents_online 2\" line:\n%s", out.String())
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agents", "0"}, "--agents 0: want 1-10000"},
		{[]string{"--seconds", "0.5"}, "--seconds 0.5: want 1-3600"},
		{[]string{"--heartbeat", "500ms"}, "--heartbeat 500ms: want 1s-1h"},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		err := Run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
