package telemetrybench

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP atelier_deployment_requests_total x
# TYPE atelier_deployment_requests_total counter
atelier_deployment_requests_total{deployment="bench",outcome="ok"} 120
atelier_deployment_requests_total{deployment="bench",outcome="error"} 3
atelier_deployment_requests_total{deployment="other",outcome="ok"} 1000
atelier_telemetry_batches_ingested_total 42
atelier_telemetry_points_received_total 4.2e+06
`
	c, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.requests != 123 || c.batches != 42 || c.points != 4.2e6 {
		t.Fatalf("parsed %+v, want requests 123 (bench only), batches 42, points 4.2e6", c)
	}
	if _, err := parseMetrics(strings.NewReader("atelier_telemetry_batches_ingested_total 1\n")); err == nil || !strings.Contains(err.Error(), metricPoints) {
		t.Fatalf("missing points series: err %v", err)
	}
	if _, err := parseMetrics(strings.NewReader("atelier_telemetry_batches_ingested_total x\n")); err == nil {
		t.Fatal("a non-numeric value parsed")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agents", "0"}, "--agents 0: want 1-10000"},
		{[]string{"--interval", "10ms"}, "--interval 10ms: want 1s-1h"},
		{[]string{"--rate", "0"}, "--rate 0: want above 0"},
		{[]string{"--outage", "-1s"}, "--outage -1s: want 0-24h"},
	} {
		err := Run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestRunSmallWithOutage runs the whole benchmark at a small size (5
// agents reporting every second, 2 s measured, then the hub killed with -9
// for 2 s and restarted) and checks that every request the fleet scored is
// counted by the hub exactly once, and the report's shape; not how fast
// anything is.
func TestRunSmallWithOutage(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--agents", "5", "--seconds", "2", "--outage", "2s", "--json", "--dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Requests == 0 || r.Counted != r.Requests || r.Lost != 0 || r.Duplicated != 0 {
		t.Fatalf("the fleet scored %d requests, the hub counts %d (lost %d, duplicated %d)", r.Requests, r.Counted, r.Lost, r.Duplicated)
	}
	if r.BacklogRequests == 0 || r.BacklogRequests > r.Requests || r.DrainSeconds <= 0 || r.OutageSeconds != 2 {
		t.Fatalf("outage %v s, backlog %d of %d requests, drained in %v s", r.OutageSeconds, r.BacklogRequests, r.Requests, r.DrainSeconds)
	}
	if r.DrainHubCPUCores < 0 || r.DrainBenchCPUCores <= 0 || r.DrainBenchCPUCores > float64(runtime.NumCPU()) {
		t.Fatalf("while draining: hub %v cores, bench %v cores; want the bench's above 0 and at most %d", r.DrainHubCPUCores, r.DrainBenchCPUCores, runtime.NumCPU())
	}
	if r.BatchesPerSec <= 0 || r.PointsPerSec <= r.BatchesPerSec || r.HubCPUCores < 0 || r.HubRSSMiB <= 0 {
		t.Fatalf("steady state: %v batches/s, %v points/s, %v cores, %v MiB", r.BatchesPerSec, r.PointsPerSec, r.HubCPUCores, r.HubRSSMiB)
	}
}
