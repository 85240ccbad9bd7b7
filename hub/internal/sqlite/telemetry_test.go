package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"google.golang.org/protobuf/proto"
)

// telemetryT0 is the start of the test data; the store's clock is set
// after it so batches are not in its future.
var telemetryT0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

var latencyBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1}

// tdep is one deployment entry: ok and failed requests, their latencies
// spread over the buckets by v, and batch sizes.
func tdep(name string, version uint32, ok, failed uint64, v int) *agentv1.DeploymentTelemetry {
	counts := make([]uint64, len(latencyBounds)+1)
	n := ok + failed
	for i := range n {
		counts[(int(i)+v)%len(counts)]++
	}
	d := &agentv1.DeploymentTelemetry{
		Name: name, ModelVersion: version,
		Requests:       map[string]uint64{"ok": ok},
		RequestSeconds: &agentv1.Histogram{Bounds: latencyBounds, Counts: counts, Sum: float64(n) * 0.01},
		QueueSeconds:   &agentv1.Histogram{Bounds: latencyBounds, Counts: slices.Clone(counts), Sum: float64(n) * 0.001},
		BatchSize:      &agentv1.Histogram{Bounds: []float64{1, 2, 4, 8}, Counts: []uint64{0, 0, n / 2, 0, 0}, Sum: float64(n)},
	}
	if failed > 0 {
		d.Requests["error"] = failed
	}
	return d
}

func tbatch(seq uint64, start time.Time, deps ...*agentv1.DeploymentTelemetry) *agentv1.TelemetryBatch {
	return &agentv1.TelemetryBatch{
		Seq: seq, StartUnixNano: start.UnixNano(), EndUnixNano: start.Add(10 * time.Second).UnixNano(),
		Deployments: deps,
		Agent: &agentv1.AgentTelemetry{ProcessCpuSeconds: 0.5, HostCpuUtilization: 0.25, ProcessRssBytes: 1000 + seq,
			UptimeSeconds: seq * 10, DiskTotalBytes: 1 << 30, DiskFreeBytes: 1 << 29},
		DroppedBatches: seq / 100,
	}
}

func openTelemetry(t *testing.T) (*Store, string) {
	t.Helper()
	st, path := openTest(t)
	st.now = func() time.Time { return telemetryT0.Add(48 * time.Hour) }
	return st, path
}

func ingest(t *testing.T, st *Store, uploads ...hub.TelemetryUpload) hub.TelemetryIngest {
	t.Helper()
	res, err := st.IngestTelemetry(context.Background(), uploads)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestTelemetryNothingCountedTwice(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	at := func(i int) time.Time { return telemetryT0.Add(time.Duration(i) * 10 * time.Second) }
	var b []*agentv1.TelemetryBatch
	for i := range 10 {
		b = append(b, tbatch(uint64(i+1), at(i), tdep("d", 1, 7, 1, i)))
	}
	// Two uploads of a1 overlap (a lost ack), one repeats a batch inside
	// itself; a2 sends batches with the same seqs (seq is per agent).
	res := ingest(t, st,
		hub.TelemetryUpload{Agent: "a1", Batches: b[:6]},
		hub.TelemetryUpload{Agent: "a1", Batches: b[4:8]},
		hub.TelemetryUpload{Agent: "a1", Batches: []*agentv1.TelemetryBatch{b[8], b[8]}},
		hub.TelemetryUpload{Agent: "a2", Batches: b[:3]},
	)
	if want := (hub.TelemetryIngest{Stored: 9 + 3, Duplicates: 2 + 1}); res.Stored != want.Stored || res.Duplicates != want.Duplicates || res.Rejected != 0 {
		t.Fatalf("ingest = %+v, want %+v", res, want)
	}
	// A whole resend in a later transaction is all duplicates.
	if res := ingest(t, st, hub.TelemetryUpload{Agent: "a1", Batches: b[:9]}); res.Stored != 0 || res.Duplicates != 9 {
		t.Fatalf("resend = %+v, want 9 duplicates", res)
	}
	check := func(when string, wantReq, wantErr uint64) {
		t.Helper()
		m, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{Since: telemetryT0})
		if err != nil {
			t.Fatal(err)
		}
		if m.Total.Requests != wantReq || m.Total.Errors != wantErr || m.Total.ByOutcome["ok"] != wantReq-wantErr {
			t.Errorf("%s: total = %d requests, %d errors (%v); want %d, %d", when, m.Total.Requests, m.Total.Errors, m.Total.ByOutcome, wantReq, wantErr)
		}
		tot, err := st.TelemetryTotals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(tot) != 1 || tot[0].Deployment != "d" || tot[0].Requests["ok"]+tot[0].Requests["error"] != wantReq || tot[0].Requests["error"] != wantErr {
			t.Fatalf("%s: totals = %+v, want %d requests", when, tot, wantReq)
		}
		var n uint64
		for _, c := range tot[0].RequestSeconds.Counts {
			n += c
		}
		if n != wantReq || len(tot[0].RequestSeconds.Counts) != len(latencyBounds)+1 {
			t.Errorf("%s: totals histogram holds %d observations, want %d", when, n, wantReq)
		}
	}
	check("after resends", 12*8, 12)

	// Once the exact dedup records are pruned (a raw window later), the
	// floor still knows every seq stored: a very late resend is a
	// duplicate, a new seq is stored.
	later := st.now().Add(30 * time.Hour)
	if _, err := st.PruneTelemetry(ctx, later, hub.TelemetryRetention{Raw: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	var seen int
	if err := st.DB().QueryRow("SELECT count(*) FROM telemetry_seen").Scan(&seen); err != nil || seen != 0 {
		t.Fatalf("exact dedup records after prune: %d (%v), want 0", seen, err)
	}
	st.now = func() time.Time { return later }
	res = ingest(t, st, hub.TelemetryUpload{Agent: "a1", Batches: b}, hub.TelemetryUpload{Agent: "a2", Batches: b[:4]})
	if res.Stored != 2 || res.Duplicates != 12 {
		t.Fatalf("resend after prune = %+v, want 2 stored (a1 seq 10, a2 seq 4), 12 duplicates", res)
	}
	check("after late resend", 14*8, 14)
}

func TestTelemetryInvalidBatches(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	good := func() *agentv1.TelemetryBatch { return tbatch(1, telemetryT0, tdep("bad", 1, 5, 0, 0)) }
	for _, tc := range []struct {
		name  string
		agent string
		edit  func(b *agentv1.TelemetryBatch)
		want  string
	}{
		{"seq zero", "a", func(b *agentv1.TelemetryBatch) { b.Seq = 0 }, "seq 0: expected 1 to"},
		{"counts length", "a", func(b *agentv1.TelemetryBatch) {
			b.Deployments[0].RequestSeconds.Counts = b.Deployments[0].RequestSeconds.Counts[1:]
		}, "deployments[0].request_seconds: 7 counts for 7 bounds: expected len(bounds)+1 = 8"},
		{"bounds not ascending", "a", func(b *agentv1.TelemetryBatch) {
			b.Deployments[0].QueueSeconds.Bounds = []float64{0.1, 0.05, 0.2, 0.3, 0.4, 0.5, 0.6}
		}, "deployments[0].queue_seconds: bounds[1] = 0.05 after 0.1: expected strictly ascending"},
		{"NaN bound", "a", func(b *agentv1.TelemetryBatch) {
			b.Deployments[0].BatchSize.Bounds = []float64{1, math.NaN(), 4, 8}
		}, "deployments[0].batch_size: bounds[1] = NaN: expected a finite number"},
		{"Inf sum", "a", func(b *agentv1.TelemetryBatch) { b.Deployments[0].RequestSeconds.Sum = math.Inf(1) }, "request_seconds: sum +Inf: expected a finite number from -1e+12 to 1e+12"},
		{"NaN cpu", "a", func(b *agentv1.TelemetryBatch) { b.Agent.ProcessCpuSeconds = math.NaN() }, "agent: process_cpu_seconds NaN"},
		{"negative start", "a", func(b *agentv1.TelemetryBatch) { b.StartUnixNano = -5 }, "start_unix_nano -5: expected a time after 2000-01-01"},
		{"end before start", "a", func(b *agentv1.TelemetryBatch) { b.EndUnixNano = b.StartUnixNano - 1 }, "expected from start_unix_nano"},
		{"far future", "a", func(b *agentv1.TelemetryBatch) {
			b.StartUnixNano = telemetryT0.Add(24 * 365 * time.Hour).UnixNano()
			b.EndUnixNano = b.StartUnixNano + 1
		}, "expected at most 1h0m0s after the hub's clock"},
		{"long deployment name", "a", func(b *agentv1.TelemetryBatch) { b.Deployments[0].Name = strings.Repeat("x", 300) }, "deployments[0].name"},
		{"empty deployment name", "a", func(b *agentv1.TelemetryBatch) { b.Deployments[0].Name = "" }, `deployments[0].name "": expected 1 to 256 bytes`},
		{"version twice", "a", func(b *agentv1.TelemetryBatch) { b.Deployments = append(b.Deployments, b.Deployments[0]) }, "appears twice"},
		{"absurd count", "a", func(b *agentv1.TelemetryBatch) { b.Deployments[0].Requests["ok"] = math.MaxUint64 }, `requests["ok"] = 18446744073709551615`},
		{"huge rss", "a", func(b *agentv1.TelemetryBatch) { b.Agent.ProcessRssBytes = math.MaxUint64 }, "process_rss_bytes"},
		{"long agent id", strings.Repeat("a", 300), func(b *agentv1.TelemetryBatch) {}, "agent id: expected 1 to 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := good()
			tc.edit(bad)
			// The bad batch comes with a good one of another agent in the
			// same transaction: only the bad one is refused.
			res := ingest(t, st, hub.TelemetryUpload{Agent: tc.agent, Batches: []*agentv1.TelemetryBatch{bad}},
				hub.TelemetryUpload{Agent: "good-" + tc.name, Batches: []*agentv1.TelemetryBatch{tbatch(1, telemetryT0, tdep("fine", 1, 1, 0, 0))}})
			if res.Rejected != 1 || res.Stored != 1 || len(res.Invalid) != 1 {
				t.Fatalf("ingest = %+v, want 1 rejected, 1 stored", res)
			}
			err := res.Invalid[0]
			if !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "seq ") {
				t.Errorf("error = %v, want ErrInvalid naming the batch and %q", err, tc.want)
			}
		})
	}
	// Nothing of the bad batches is stored: no deployment "bad", no agent "a".
	if _, err := st.DeploymentMetrics(ctx, "bad", hub.MetricsQuery{}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("metrics of a deployment only invalid batches named: %v, want ErrNotFound", err)
	}
	if _, err := st.AgentMetrics(ctx, "a", hub.MetricsQuery{}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("metrics of an agent that sent only invalid batches: %v, want ErrNotFound", err)
	}
	// Only the 15 good batches (one deployment each) are in the tables.
	for _, table := range []string{"telemetry_agents", "telemetry_raw", "telemetry_agent_raw", "telemetry_seen"} {
		var n int
		if err := st.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 15 {
			t.Errorf("%s holds %d rows (%v), want 15: those of the good batches", table, n, err)
		}
	}
	m, err := st.DeploymentMetrics(ctx, "fine", hub.MetricsQuery{})
	if err != nil || m.Total.Requests != 15 || len(m.Agents) != 15 {
		t.Errorf("the good batches: %d requests from %d agents (%v), want 15 from 15", m.Total.Requests, len(m.Agents), err)
	}
	// A fixed batch is accepted afterwards: a rejected seq is not recorded.
	if res := ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: []*agentv1.TelemetryBatch{good()}}); res.Stored != 1 {
		t.Errorf("valid resend of a rejected seq = %+v, want stored", res)
	}
}

func TestTelemetryQueries(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	a1 := enrollAgent(t, st, "one", nil)
	idle := enrollAgent(t, st, "idle", nil)
	// a1 serves d with version 1 then 2 (both in one batch once), and e.
	ingest(t, st, hub.TelemetryUpload{Agent: a1, Batches: []*agentv1.TelemetryBatch{
		tbatch(1, telemetryT0, tdep("d", 1, 100, 0, 0), tdep("e", 3, 10, 10, 0)),
		tbatch(2, telemetryT0.Add(10*time.Second), tdep("d", 1, 50, 50, 0), tdep("d", 2, 100, 0, 0)),
	}}, hub.TelemetryUpload{Agent: "other", Batches: []*agentv1.TelemetryBatch{
		tbatch(1, telemetryT0, tdep("d", 2, 100, 0, 0)),
	}})
	q := hub.MetricsQuery{Since: telemetryT0, Until: telemetryT0.Add(100 * time.Second)}
	m, err := st.DeploymentMetrics(ctx, "d", q)
	if err != nil {
		t.Fatal(err)
	}
	if m.Total.Requests != 400 || m.Total.Errors != 50 || m.Total.ErrorRate != 0.125 || m.Total.RequestRate != 4 {
		t.Errorf("total = %+v", m.Total)
	}
	if !slices.Equal(m.Total.ModelVersions, []int{1, 2}) || len(m.Agents) != 2 || m.Agents[0].Agent > m.Agents[1].Agent {
		t.Errorf("versions %v, agents %+v", m.Total.ModelVersions, m.Agents)
	}
	// Batch sizes: n/2 runs of size ... sum n: mean 2.
	if m.Total.BatchSizeMean != 2 {
		t.Errorf("batch size mean = %v, want 2", m.Total.BatchSizeMean)
	}
	// Latencies are spread round-robin over the 8 buckets: 52 in each of
	// the first four, 48 in the others. p50 (rank 200) is 44/52 into the
	// 10..50ms bucket; p95 and p99 are in the overflow bucket, reported as
	// the last bound (1s).
	if !near(m.Total.LatencyP50Ms, 10+40*44.0/52) || m.Total.LatencyP99Ms != 1000 || m.Total.LatencyP95Ms != 1000 || m.Total.QueueP99Ms != 1000 || m.Total.ComputeP99Ms != 0 {
		t.Errorf("latencies = p50 %v p95 %v p99 %v queue %v compute %v", m.Total.LatencyP50Ms, m.Total.LatencyP95Ms, m.Total.LatencyP99Ms, m.Total.QueueP99Ms, m.Total.ComputeP99Ms)
	}
	one, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{Since: q.Since, Until: q.Until, Agent: "other"})
	if err != nil || len(one.Agents) != 1 || one.Total.Requests != 100 || !slices.Equal(one.Total.ModelVersions, []int{2}) {
		t.Errorf("one agent: %+v (%v)", one, err)
	}
	// The second batch is outside [t0, t0+10s).
	early, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{Since: telemetryT0, Until: telemetryT0.Add(10 * time.Second)})
	if err != nil || early.Total.Requests != 200 {
		t.Errorf("first 10s: %d requests (%v), want 200", early.Total.Requests, err)
	}
	am, err := st.AgentMetrics(ctx, a1, q)
	if err != nil {
		t.Fatal(err)
	}
	if am.Batches != 2 || !near(am.CPUCoresMean, 0.05) || !near(am.HostCPUUtilizationMean, 0.25) || am.RSSBytes != 1002 || am.UptimeSeconds != 20 ||
		!am.LastReport.Equal(telemetryT0.Add(20*time.Second)) || len(am.Deployments) != 2 ||
		am.Deployments[0].Deployment != "d" || am.Deployments[0].Requests != 300 || am.Deployments[1].Requests != 20 || am.Deployments[1].Errors != 10 {
		t.Errorf("agent metrics = %+v", am)
	}
	// Known without telemetry: zero figures; unknown: not found.
	if am, err := st.AgentMetrics(ctx, idle, q); err != nil || am.Batches != 0 || len(am.Deployments) != 0 {
		t.Errorf("idle agent = %+v, %v", am, err)
	}
	if _, err := st.AgentMetrics(ctx, "nobody", q); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown agent: %v, want ErrNotFound", err)
	}
	if _, err := st.DeploymentMetrics(ctx, "nothing", q); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown deployment: %v, want ErrNotFound", err)
	}
	// A known deployment with no telemetry in the window is zero.
	if m, err := st.DeploymentMetrics(ctx, "e", hub.MetricsQuery{Since: telemetryT0.Add(time.Hour)}); err != nil || m.Total.Requests != 0 || len(m.Agents) != 0 {
		t.Errorf("empty window = %+v, %v", m, err)
	}
	if _, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{Since: telemetryT0, Until: telemetryT0}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("empty window: %v, want ErrInvalid", err)
	}
	// A deployment that exists but never sent telemetry has zero figures.
	register(t, st, "clf", 1)
	if _, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "quiet", Model: "clf:1", Agents: []string{idle}})); err != nil {
		t.Fatal(err)
	}
	if m, err := st.DeploymentMetrics(ctx, "quiet", q); err != nil || m.Total.Requests != 0 || m.Agents == nil || len(m.Agents) != 0 {
		t.Errorf("deployment without telemetry = %+v, %v; want zero figures", m, err)
	}
	if _, err := st.PruneTelemetry(ctx, telemetryT0, hub.TelemetryRetention{Raw: -time.Hour}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("negative retention: %v, want ErrInvalid", err)
	}
}

// TestTelemetryRollupBoundary stores the same 3 hours of data in two
// stores, prunes one so that its first part is only in rollups, and checks
// that every minute-aligned window answers the same in both.
func TestTelemetryRollupBoundary(t *testing.T) {
	ctx := context.Background()
	raw, _ := openTelemetry(t)
	rolled, _ := openTelemetry(t)
	var uploads []hub.TelemetryUpload
	for a := range 3 {
		agent := fmt.Sprintf("agent-%d", a)
		var bs []*agentv1.TelemetryBatch
		for i := range 3 * 360 { // every 10s for 3h
			start := telemetryT0.Add(time.Duration(i) * 10 * time.Second)
			bs = append(bs, tbatch(uint64(i+1), start, tdep("d", uint32(1+i/500), uint64(i%7+a), uint64(i%3), i+a), tdep("e", 1, 1, 0, a)))
		}
		uploads = append(uploads, hub.TelemetryUpload{Agent: agent, Batches: bs})
	}
	for _, st := range []*Store{raw, rolled} {
		ingest(t, st, uploads...)
	}
	// Fold everything before t0+100m (not on a minute of the data grid
	// boundary for 10s batches: 100m = 600 batches).
	now := telemetryT0.Add(100*time.Minute + 30*time.Second).Add(time.Hour)
	p, err := rolled.PruneTelemetry(ctx, now, hub.TelemetryRetention{Raw: time.Hour, Rollups: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// 3 agents × 600 batches × 2 deployment rows + 3 × 600 agent rows.
	if p.RawDeleted != 3*600*3 || p.RollupsAdded != 3*100*2+3*100+3 /* d's version changes inside minute 83 */ || p.RollupDeleted != 0 {
		t.Errorf("pruned = %+v", p)
	}
	var left int
	if err := rolled.DB().QueryRow("SELECT count(*) FROM telemetry_raw WHERE start_ns < ?", telemetryT0.Add(100*time.Minute).UnixNano()).Scan(&left); err != nil || left != 0 {
		t.Fatalf("raw rows before the cut: %d (%v)", left, err)
	}
	windows := []hub.MetricsQuery{
		{Since: telemetryT0, Until: telemetryT0.Add(3 * time.Hour)},                          // all
		{Since: telemetryT0.Add(90 * time.Minute), Until: telemetryT0.Add(2 * time.Hour)},    // across the cut
		{Since: telemetryT0.Add(10 * time.Minute), Until: telemetryT0.Add(20 * time.Minute)}, // rollups only
		{Since: telemetryT0.Add(2 * time.Hour), Until: telemetryT0.Add(150 * time.Minute)},   // raw only
		{Since: telemetryT0.Add(80 * time.Minute), Until: telemetryT0.Add(110 * time.Minute), Agent: "agent-1"},
	}
	for _, q := range windows {
		for _, dep := range []string{"d", "e"} {
			want, err1 := raw.DeploymentMetrics(ctx, dep, q)
			got, err2 := rolled.DeploymentMetrics(ctx, dep, q)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if want.Total.Requests == 0 {
				t.Fatalf("window %v: no data, the test checks nothing", q)
			}
			if !sameRequestMetrics(got.Total, want.Total) || len(got.Agents) != len(want.Agents) {
				t.Errorf("%s window %s..%s: rolled up %+v, raw %+v", dep, q.Since.Format("15:04"), q.Until.Format("15:04"), got.Total, want.Total)
				continue
			}
			for i := range want.Agents {
				if !sameRequestMetrics(got.Agents[i], want.Agents[i]) {
					t.Errorf("%s window %s..%s agent %s: rolled up %+v, raw %+v", dep, q.Since.Format("15:04"), q.Until.Format("15:04"), want.Agents[i].Agent, got.Agents[i], want.Agents[i])
				}
			}
		}
		want, err1 := raw.AgentMetrics(ctx, "agent-2", q)
		got, err2 := rolled.AgentMetrics(ctx, "agent-2", q)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if want.Batches == 0 || got.Batches != want.Batches || !got.LastReport.Equal(want.LastReport) || got.RSSBytes != want.RSSBytes ||
			got.DroppedBatches != want.DroppedBatches || !near(got.CPUCoresMean, want.CPUCoresMean) ||
			!near(got.HostCPUUtilizationMean, want.HostCPUUtilizationMean) || len(got.Deployments) != len(want.Deployments) {
			t.Errorf("agent window %s..%s: rolled up %+v, raw %+v", q.Since.Format("15:04"), q.Until.Format("15:04"), got, want)
			continue
		}
		for i := range want.Deployments {
			if !sameRequestMetrics(got.Deployments[i], want.Deployments[i]) {
				t.Errorf("agent window deployment %s: rolled up %+v, raw %+v", want.Deployments[i].Deployment, got.Deployments[i], want.Deployments[i])
			}
		}
	}
	// Totals are not touched by retention.
	wt, _ := raw.TelemetryTotals(ctx)
	gt, _ := rolled.TelemetryTotals(ctx)
	if len(wt) != 2 || len(gt) != 2 || fmt.Sprint(wt[0].Requests, wt[0].RequestSeconds.Counts) != fmt.Sprint(gt[0].Requests, gt[0].RequestSeconds.Counts) {
		t.Errorf("totals changed by pruning: %v vs %v", gt, wt)
	}
	// A late batch of a folded minute joins its rollup.
	rolled.now = func() time.Time { return now }
	res := ingest(t, rolled, hub.TelemetryUpload{Agent: "agent-0", Batches: []*agentv1.TelemetryBatch{tbatch(5000, telemetryT0.Add(5*time.Second), tdep("d", 1, 1000, 0, 0))}})
	if res.Stored != 1 {
		t.Fatal(res)
	}
	if _, err := rolled.PruneTelemetry(ctx, now, hub.TelemetryRetention{Raw: time.Hour, Rollups: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	first := hub.MetricsQuery{Since: telemetryT0, Until: telemetryT0.Add(time.Minute)}
	before, _ := raw.DeploymentMetrics(ctx, "d", first)
	after, _ := rolled.DeploymentMetrics(ctx, "d", first)
	if after.Total.Requests != before.Total.Requests+1000 || len(after.Agents) != 3 {
		t.Errorf("late batch: %d requests, want %d", after.Total.Requests, before.Total.Requests+1000)
	}
	// Rollups expire.
	p, err = rolled.PruneTelemetry(ctx, now.Add(48*time.Hour), hub.TelemetryRetention{Raw: time.Hour, Rollups: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The first fold's 903 rollups and, folded and expired now, 3 agents ×
	// 80 minutes of d (one more where its version changes), e and figures.
	if p.RollupDeleted != 903+3*81+3*80+3*80 || p.RawDeleted != 3*480*3 || p.RollupsAdded != 3*81+3*80+3*80 {
		t.Errorf("second prune = %+v", p)
	}
	if m, err := rolled.DeploymentMetrics(ctx, "d", windows[0]); err != nil || m.Total.Requests != 0 {
		t.Errorf("after rollups expired: %d requests (%v), want 0", m.Total.Requests, err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func sameRequestMetrics(a, b hub.RequestMetrics) bool {
	return a.Agent == b.Agent && a.Deployment == b.Deployment && a.Requests == b.Requests && a.Errors == b.Errors &&
		fmt.Sprint(a.ByOutcome) == fmt.Sprint(b.ByOutcome) && near(a.RequestRate, b.RequestRate) && near(a.ErrorRate, b.ErrorRate) &&
		near(a.LatencyP50Ms, b.LatencyP50Ms) && near(a.LatencyP95Ms, b.LatencyP95Ms) && near(a.LatencyP99Ms, b.LatencyP99Ms) &&
		near(a.QueueP99Ms, b.QueueP99Ms) && near(a.ComputeP99Ms, b.ComputeP99Ms) && near(a.BatchSizeMean, b.BatchSizeMean) &&
		slices.Equal(a.ModelVersions, b.ModelVersions)
}

func TestTelemetryPruneFreesSpace(t *testing.T) {
	ctx := context.Background()
	st, path := openTelemetry(t)
	var uploads []hub.TelemetryUpload
	for a := range 200 {
		var bs []*agentv1.TelemetryBatch
		for i := range 30 {
			bs = append(bs, tbatch(uint64(i+1), telemetryT0.Add(time.Duration(i)*10*time.Second),
				tdep(fmt.Sprintf("d%d", a%3), 1, 10, 1, i), tdep("e", 1, uint64(i), 0, a)))
		}
		uploads = append(uploads, hub.TelemetryUpload{Agent: fmt.Sprintf("agent-%03d", a), Batches: bs})
	}
	ingest(t, st, uploads...)
	size := func() int64 {
		t.Helper()
		if _, err := st.DB().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	p, err := st.PruneTelemetry(ctx, telemetryT0.Add(100*24*time.Hour), hub.TelemetryRetention{})
	if err != nil {
		t.Fatal(err)
	}
	after := size()
	if p.RawDeleted != 200*30*3 || p.BytesFreed < (before-after)*9/10 || after > before/2 {
		t.Errorf("prune = %+v; file %d → %d bytes", p, before, after)
	}
	t.Logf("prune %+v; file %d → %d bytes", p, before, after)
	// What survives is the totals.
	tot, err := st.TelemetryTotals(ctx)
	if err != nil || len(tot) != 4 {
		t.Fatalf("totals after prune: %v %v", tot, err)
	}
}

// TestIncrementalVacuumConversion opens a database made before the store
// created its files with auto_vacuum = INCREMENTAL: Open converts it.
func TestIncrementalVacuumConversion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	st, err := Open(context.Background(), Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec("PRAGMA auto_vacuum = NONE"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec("VACUUM"); err != nil {
		t.Fatal(err)
	}
	var mode int
	if err := st.DB().QueryRow("PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != 0 {
		t.Fatalf("setup: auto_vacuum = %d (%v), want 0", mode, err)
	}
	st.Close()
	st, err = Open(context.Background(), Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.DB().QueryRow("PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != 2 {
		t.Fatalf("auto_vacuum after reopen = %d (%v), want 2 (incremental)", mode, err)
	}
}

// TestTelemetryDataRoundTrip checks the compact encoding and histogram
// merging with different bounds.
func TestTelemetryDataRoundTrip(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	d := dataFrom(tdep("d", 1, 40, 3, 2))
	var buf []byte
	err := st.write(ctx, func(tx *sql.Tx) error {
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		if buf, err = bt.encodeData(ctx, tx, d, nil); err != nil {
			return err
		}
		back, err := bt.decodeData(buf)
		if err != nil {
			return err
		}
		if fmt.Sprint(back.outcomes, back.h) != fmt.Sprint(d.outcomes, d.h) {
			return fmt.Errorf("round trip: %v, want %v", back, d)
		}
		if _, err := bt.decodeData(buf[:len(buf)-1]); !errors.Is(err, errBadData) {
			return fmt.Errorf("truncated data: %v, want errBadData", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 43 requests: 8 bounds of 8 bytes each would be 256 bytes for four
	// histograms; interned, the row is a fraction of that.
	if len(buf) > 80 {
		t.Errorf("encoded row is %d bytes", len(buf))
	}
	h := hist{bounds: []float64{1, 2, 4}, counts: []uint64{1, 1, 1, 1}, sum: 10}
	h.add(hist{bounds: []float64{1, 3}, counts: []uint64{5, 6, 7}, sum: 1})
	if !slices.Equal(h.counts, []uint64{6, 1, 7, 8}) || h.sum != 11 {
		t.Errorf("merged = %+v, want counts [6 1 7 8] sum 11", h)
	}
}

// FuzzIngestTelemetry feeds arbitrary batches (as an agent's protobuf) to
// IngestTelemetry: each is stored, a duplicate or rejected, never a
// database error, and whatever is stored answers queries that encode as
// JSON (no NaN or Inf).
func FuzzIngestTelemetry(f *testing.F) {
	for i, b := range []*agentv1.TelemetryBatch{
		tbatch(1, telemetryT0, tdep("d", 1, 10, 2, 0)),
		tbatch(2, telemetryT0.Add(time.Minute), tdep("d", 2, 0, 0, 0), tdep("e", 1, 5, 5, 3)),
		{Seq: 3, StartUnixNano: telemetryT0.UnixNano(), EndUnixNano: telemetryT0.UnixNano()},
		{Seq: 4, StartUnixNano: telemetryT0.UnixNano(), EndUnixNano: telemetryT0.Add(time.Second).UnixNano(),
			Deployments: []*agentv1.DeploymentTelemetry{{Name: "h", RequestSeconds: &agentv1.Histogram{Bounds: []float64{1, 3}, Counts: []uint64{1, 2, 3}, Sum: 1e12}}}},
		{Seq: 5, StartUnixNano: telemetryT0.UnixNano(), EndUnixNano: telemetryT0.Add(time.Second).UnixNano(),
			Deployments: []*agentv1.DeploymentTelemetry{{Name: "h", RequestSeconds: &agentv1.Histogram{Bounds: []float64{-1e12, 0, 1e12}, Counts: []uint64{1 << 40, 2, 3, 1 << 40}, Sum: -1e12}}}},
	} {
		raw, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, uint8(i))
	}
	st, err := Open(context.Background(), Config{Path: filepath.Join(f.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	st.now = func() time.Time { return telemetryT0.Add(48 * time.Hour) }
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw []byte, agent uint8) {
		var b agentv1.TelemetryBatch
		if proto.Unmarshal(raw, &b) != nil {
			return
		}
		id := fmt.Sprintf("agent-%d", agent%4)
		res, err := st.IngestTelemetry(ctx, []hub.TelemetryUpload{{Agent: id, Batches: []*agentv1.TelemetryBatch{&b}}})
		if err != nil {
			t.Fatalf("ingest: %v", err)
		}
		if res.Stored+res.Duplicates+res.Rejected != 1 || len(res.Invalid) != res.Rejected {
			t.Fatalf("ingest = %+v", res)
		}
		if res.Stored != 1 {
			return
		}
		check := func(what string, v any, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("%s does not encode: %v", what, err)
			}
		}
		for _, d := range b.GetDeployments() {
			m, err := st.DeploymentMetrics(ctx, d.GetName(), hub.MetricsQuery{})
			check("deployment metrics", m, err)
		}
		am, err := st.AgentMetrics(ctx, id, hub.MetricsQuery{})
		check("agent metrics", am, err)
		tot, err := st.TelemetryTotals(ctx)
		check("totals", len(tot), err)
	})
}

// TestTelemetrySurvivesKill runs the ingestion in a child process (this
// test binary again), kills it with SIGKILL while it stores batches of 10
// requests, then, as an agent would, resends everything from seq 1 on
// (acknowledged or not) to the reopened store: every batch is counted
// exactly once, and every batch acknowledged before the kill was kept.
func TestTelemetrySurvivesKill(t *testing.T) {
	ctx := context.Background()
	const env = "ATELIER_TELEMETRY_KILL_DB"
	if path := os.Getenv(env); path != "" {
		telemetryKillChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "hub.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestTelemetrySurvivesKill$")
	cmd.Env = append(os.Environ(), env+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child prints each seq once IngestTelemetry returned.
	sc := bufio.NewScanner(out)
	acked := 0
	for acked < 50 && sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue // test framework output
		}
		acked = n
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < 50 {
		t.Fatalf("child acknowledged %d batches before it ended", acked)
	}
	st, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.now = func() time.Time { return telemetryT0.Add(48 * time.Hour) }
	resend := acked + 20 // the child may have stored a few more
	var bs []*agentv1.TelemetryBatch
	for i := 1; i <= resend; i++ {
		bs = append(bs, tbatch(uint64(i), telemetryT0.Add(time.Duration(i)*time.Second), tdep("d", 1, 10, 0, i)))
	}
	res, err := st.IngestTelemetry(ctx, []hub.TelemetryUpload{{Agent: "a", Batches: bs}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates < acked || res.Stored+res.Duplicates != resend {
		t.Errorf("resend after kill = %+v: want at least the %d acknowledged as duplicates", res, acked)
	}
	m, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{Since: telemetryT0})
	if err != nil {
		t.Fatal(err)
	}
	if m.Total.Requests != uint64(10*resend) {
		t.Errorf("after kill and resend: %d requests, want exactly %d", m.Total.Requests, 10*resend)
	}
	tot, err := st.TelemetryTotals(ctx)
	if err != nil || len(tot) != 1 || tot[0].Requests["ok"] != uint64(10*resend) {
		t.Errorf("totals after kill and resend: %+v (%v), want %d", tot, err, 10*resend)
	}
	t.Logf("killed after %d acknowledged batches; %d stored again, %d duplicates", acked, res.Stored, res.Duplicates)
}

// telemetryKillChild stores batches of agent "a" one transaction each,
// printing each seq once stored, until killed.
func telemetryKillChild(path string) {
	ctx := context.Background()
	st, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st.now = func() time.Time { return telemetryT0.Add(48 * time.Hour) }
	for i := 1; ; i++ {
		b := tbatch(uint64(i), telemetryT0.Add(time.Duration(i)*time.Second), tdep("d", 1, 10, 0, i))
		if _, err := st.IngestTelemetry(ctx, []hub.TelemetryUpload{{Agent: "a", Batches: []*agentv1.TelemetryBatch{b}}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

// TestTelemetryDedupRuns checks the dedup record with gaps and seqs out of
// order: runs of consecutive seqs, each batch stored once.
func TestTelemetryDedupRuns(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	send := func(seqs ...int) hub.TelemetryIngest {
		t.Helper()
		var bs []*agentv1.TelemetryBatch
		for _, s := range seqs {
			bs = append(bs, tbatch(uint64(s), telemetryT0.Add(time.Duration(s)*time.Second), tdep("d", 1, 1, 0, s)))
		}
		return ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: bs})
	}
	runs := func() string {
		t.Helper()
		rows, err := st.DB().Query("SELECT lo, hi FROM telemetry_seen WHERE agent_id = (SELECT id FROM telemetry_agents WHERE agent = 'a') ORDER BY lo")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var lo, hi int
			if err := rows.Scan(&lo, &hi); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d-%d", lo, hi))
		}
		return strings.Join(out, " ")
	}
	send(1, 2, 3, 4, 5)
	send(10, 11, 12)
	send(7)
	if got := runs(); got != "1-5 7-7 10-12" {
		t.Errorf("runs = %q", got)
	}
	res := send(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
	if res.Stored != 4 || res.Duplicates != 9 {
		t.Errorf("resend = %+v, want 4 stored (6, 8, 9, 13), 9 duplicates", res)
	}
	if got := runs(); got != "1-6 7-9 10-13" {
		t.Errorf("runs = %q", got)
	}
	m, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{})
	if err != nil || m.Total.Requests != 13 {
		t.Errorf("requests = %d (%v), want 13", m.Total.Requests, err)
	}
	// Runs stored before the raw window go below the floor.
	if _, err := st.PruneTelemetry(ctx, st.now().Add(25*time.Hour), hub.TelemetryRetention{}); err != nil {
		t.Fatal(err)
	}
	var floor int
	if err := st.DB().QueryRow("SELECT floor FROM telemetry_agents WHERE agent = 'a'").Scan(&floor); err != nil || floor != 13 || runs() != "" {
		t.Errorf("after prune: floor %d (%v), runs %q; want 13 and none", floor, err, runs())
	}
}

// TestTelemetryMergedBatches: a batch with first_seq covers first_seq..seq;
// it is stored once and counts for the batches it covers, and any resend
// overlapping it, merged or not, is a duplicate.
func TestTelemetryMergedBatches(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	merged := func(first, seq uint64, ok uint64) *agentv1.TelemetryBatch {
		b := tbatch(seq, telemetryT0.Add(time.Duration(first)*time.Second), tdep("d", 1, ok, 0, int(seq)))
		b.FirstSeq = first
		return b
	}
	up := func(bs ...*agentv1.TelemetryBatch) hub.TelemetryIngest {
		t.Helper()
		return ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: bs})
	}
	single := tbatch(1, telemetryT0, tdep("d", 1, 2, 0, 1))
	if res := up(single, merged(2, 6, 10), merged(7, 9, 5)); res.Stored != 9 || res.Duplicates != 0 {
		t.Fatalf("first upload: %+v, want 9 batches stored (1, 2-6, 7-9)", res)
	}
	// Resent individually (an agent that restarted), or merged again.
	if res := up(tbatch(4, telemetryT0.Add(4*time.Second), tdep("d", 1, 99, 0, 4)), merged(7, 9, 5)); res.Stored != 0 || res.Duplicates != 4 {
		t.Fatalf("resend: %+v, want nothing stored, 4 duplicates (4 and 7-9)", res)
	}
	// A range overlapping what was stored is not stored in part.
	if res := up(merged(9, 12, 50)); res.Stored != 0 || res.Duplicates != 4 {
		t.Fatalf("overlapping range: %+v, want it counted as 4 duplicates", res)
	}
	if res := up(merged(13, 15, 1)); res.Stored != 3 {
		t.Fatalf("next range: %+v, want 3 stored", res)
	}
	m, err := st.DeploymentMetrics(ctx, "d", hub.MetricsQuery{})
	if err != nil || m.Total.Requests != 18 {
		t.Fatalf("requests = %d (%v), want 2 + 10 + 5 + 1 = 18", m.Total.Requests, err)
	}
	am, err := st.AgentMetrics(ctx, "a", hub.MetricsQuery{})
	if err != nil || am.Batches != 12 {
		t.Fatalf("agent batches = %d (%v), want 12 (1, 2-6, 7-9, 13-15)", am.Batches, err)
	}
	bad := merged(20, 19, 1)
	if res := up(bad); res.Rejected != 1 || !strings.Contains(fmt.Sprint(res.Invalid), "first_seq 20: expected at most seq 19") {
		t.Fatalf("first_seq above seq: %+v, want rejected with the fields named", res)
	}
}

// TestTelemetryBoundedGrowth checks that agents sending ever new outcome
// names or histogram bounds cannot grow merged rows or the bounds table
// without end.
func TestTelemetryBoundedGrowth(t *testing.T) {
	ctx := context.Background()
	st, _ := openTelemetry(t)
	var bs []*agentv1.TelemetryBatch
	for i := range 3 {
		d := &agentv1.DeploymentTelemetry{Name: "d", Requests: map[string]uint64{}}
		for j := range maxOutcomes {
			d.Requests[fmt.Sprintf("o%d-%d", i, j)] = 1
		}
		bs = append(bs, tbatch(uint64(i+1), telemetryT0, d))
	}
	if res := ingest(t, st, hub.TelemetryUpload{Agent: "a", Batches: bs}); res.Stored != 3 {
		t.Fatalf("ingest = %+v", res)
	}
	tot, err := st.TelemetryTotals(ctx)
	if err != nil || len(tot) != 1 {
		t.Fatal(tot, err)
	}
	var n uint64
	for _, c := range tot[0].Requests {
		n += c
	}
	if len(tot[0].Requests) != maxMergedOutcomes+1 || tot[0].Requests["other"] != 3*maxOutcomes-maxMergedOutcomes || n != 3*maxOutcomes {
		t.Errorf("totals hold %d outcomes (other %d), %d requests; want %d, %d, %d", len(tot[0].Requests), tot[0].Requests["other"], n,
			maxMergedOutcomes+1, 3*maxOutcomes-maxMergedOutcomes, 3*maxOutcomes)
	}

	bs = nil
	for i := range maxBoundSets + 1 {
		d := &agentv1.DeploymentTelemetry{Name: "e", Requests: map[string]uint64{"ok": 1},
			RequestSeconds: &agentv1.Histogram{Bounds: []float64{float64(i + 1)}, Counts: []uint64{1, 0}}}
		bs = append(bs, tbatch(uint64(i+1), telemetryT0, d))
	}
	res := ingest(t, st, hub.TelemetryUpload{Agent: "b", Batches: bs})
	// The first batches had no histograms: 4096 sets fit, the last is refused.
	if want := maxBoundSets; res.Stored != want || res.Rejected != len(bs)-want ||
		!strings.Contains(res.Invalid[0].Error(), "histogram bounds: 1 new sets of bounds, the store holds 4096 of at most 4096") {
		t.Errorf("ingest = %d stored, %d rejected (%v); want %d stored", res.Stored, res.Rejected, res.Invalid, want)
	}
}
