package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

const (
	benchAgents      = 1000
	benchDeployments = 3
)

// benchTelemetry returns one group commit's uploads: every agent sends one
// batch (seq) of 3 deployments with full histograms, 1s long. Agent ids
// have the length of real ones (32 hex digits).
func benchTelemetry(seq int) []hub.TelemetryUpload {
	start := telemetryT0.Add(time.Duration(seq-1) * time.Second)
	uploads := make([]hub.TelemetryUpload, benchAgents)
	for a := range uploads {
		deps := make([]*agentv1.DeploymentTelemetry, benchDeployments)
		for d := range deps {
			deps[d] = tdep(fmt.Sprintf("deployment-%d", d), 1, uint64(20+a%7), uint64(a%2), a+seq)
			deps[d].ComputeSeconds = deps[d].QueueSeconds
		}
		b := tbatch(uint64(seq), start, deps...)
		b.EndUnixNano = start.Add(time.Second).UnixNano()
		uploads[a] = hub.TelemetryUpload{Agent: fmt.Sprintf("%032x", a*7919+1), Batches: []*agentv1.TelemetryBatch{b}}
	}
	return uploads
}

// BenchmarkIngestTelemetry measures IngestTelemetry on a group commit of
// 1,000 agents × 1 batch × 3 deployments (the hub's load when 1,000
// agents report every second). Reported as batches/s and rows/s (1 dedup
// record, 1 agent row and 3 deployment rows per batch).
func BenchmarkIngestTelemetry(b *testing.B) {
	st := benchStore(b)
	st.now = func() time.Time { return telemetryT0.Add(24 * time.Hour) }
	ctx := context.Background()
	sets := make([][]hub.TelemetryUpload, 8)
	for i := range sets {
		sets[i] = benchTelemetry(1)
	}
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		uploads := sets[i%len(sets)]
		for _, u := range uploads {
			u.Batches[0].Seq = uint64(i + 1)
		}
		res, err := st.IngestTelemetry(ctx, uploads)
		if err != nil {
			b.Fatal(err)
		}
		if res.Stored != benchAgents {
			b.Fatalf("stored %+v", res)
		}
	}
	reportTelemetry(b, cpu0)
}

// BenchmarkTelemetryRawInsert is the limit IngestTelemetry is compared to:
// the same rows (a dedup row, agent row, 3 deployment rows with a
// pre-encoded data blob per batch) inserted with prepared statements, one
// transaction per 1,000 batches, without validation, dedup checks,
// encoding or totals.
func BenchmarkTelemetryRawInsert(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	uploads := benchTelemetry(1)
	// One data blob per deployment entry, encoded once.
	blobs := make([][]byte, benchAgents*benchDeployments)
	err := st.write(ctx, func(tx *sql.Tx) error {
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		for a, u := range uploads {
			for d, dep := range u.Batches[0].Deployments {
				if blobs[a*benchDeployments+d], err = bt.encodeData(ctx, tx, dataFrom(dep), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime(b)
	// Agents and deployments by id, as IngestTelemetry stores them.
	agentIDs := make([]int64, benchAgents)
	for a, u := range uploads {
		r, err := st.DB().Exec("INSERT INTO telemetry_agents (agent, floor) VALUES (?, 0)", u.Agent)
		if err != nil {
			b.Fatal(err)
		}
		agentIDs[a], _ = r.LastInsertId()
	}
	depIDs := map[string]int64{}
	for _, dep := range uploads[0].Batches[0].Deployments {
		r, err := st.DB().Exec("INSERT INTO telemetry_totals (deployment, data) VALUES (?, x'')", dep.Name)
		if err != nil {
			b.Fatal(err)
		}
		depIDs[dep.Name], _ = r.LastInsertId()
	}
	for i := 0; b.Loop(); i++ {
		tx, err := st.DB().Begin()
		if err != nil {
			b.Fatal(err)
		}
		seen, _ := tx.Prepare("INSERT INTO telemetry_seen (agent_id, lo, hi, received_at) VALUES (?, ?, ?, ?)")
		agentRaw, _ := tx.Prepare(`INSERT INTO telemetry_agent_raw (agent_id, start_ns, seq, end_ns, dur_ns, cpu_seconds,
			host_cpu_seconds, fig_end_ns, rss, mem_total, mem_available, disk_total, disk_free, uptime, cache, spool, dropped)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		raw, err := tx.Prepare(`INSERT INTO telemetry_raw (deployment_id, start_ns, agent_id, seq, model_version, end_ns, data) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		start := telemetryT0.Add(time.Duration(i) * time.Second).UnixNano()
		for a, u := range uploads {
			seq := int64(i + 1)
			if _, err := seen.Exec(agentIDs[a], seq, seq, start); err != nil {
				b.Fatal(err)
			}
			if _, err := agentRaw.Exec(agentIDs[a], start, seq, start+1e9, 1e9, 0.5, 0.25, start+1e9, 1000, 0, 0, 1<<30, 1<<29, 10, 0, 0, 0); err != nil {
				b.Fatal(err)
			}
			for d, dep := range u.Batches[0].Deployments {
				if _, err := raw.Exec(depIDs[dep.Name], start, agentIDs[a], seq, 1, start+1e9, blobs[a*benchDeployments+d]); err != nil {
					b.Fatal(err)
				}
			}
		}
		seen.Close()
		agentRaw.Close()
		raw.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	reportTelemetry(b, cpu0)
}

// cpuTime is the process's CPU time so far (user + system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportTelemetry reports rates and the CPU cores the store would use
// for 1,000 agents reporting every second (CPU seconds per 1,000
// batches): the figure that matters on a machine shared with other work,
// where wall time is mostly fsync.
func reportTelemetry(b *testing.B, cpu0 time.Duration) {
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.N*benchAgents)/b.Elapsed().Seconds(), "batches/s")
	b.ReportMetric(float64(b.N*benchAgents*(2+benchDeployments))/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cores@1k-agents/s")
}

// BenchmarkPruneTelemetry folds one minute of a 1,000-agent fleet
// reporting every second (60,000 batches, 240,000 rows) into rollups.
// Reported as rows folded per second, and the database size per batch
// stored (3 deployments each) before the fold.
func BenchmarkPruneTelemetry(b *testing.B) {
	ctx := context.Background()
	var rows int64
	for b.Loop() {
		b.StopTimer()
		st := benchStore(b)
		st.now = func() time.Time { return telemetryT0.Add(24 * time.Hour) }
		for seq := 1; seq <= 60; seq++ {
			if _, err := st.IngestTelemetry(ctx, benchTelemetry(seq)); err != nil {
				b.Fatal(err)
			}
		}
		var pages, pageSize int64
		if err := st.DB().QueryRow("SELECT page_count * page_size, page_size FROM pragma_page_count(), pragma_page_size()").Scan(&pages, &pageSize); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(pages)/float64(60*benchAgents), "db-bytes/batch")
		b.StartTimer()
		p, err := st.PruneTelemetry(ctx, telemetryT0.Add(time.Hour+2*time.Minute), hub.TelemetryRetention{Raw: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		// Folded in many transactions (pruneBudget), nothing left behind.
		if p.RawDeleted != 60*benchAgents*(1+benchDeployments) || p.RollupsAdded != benchAgents*(1+benchDeployments) {
			b.Fatalf("pruned %+v", p)
		}
		rows += p.RawDeleted
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
