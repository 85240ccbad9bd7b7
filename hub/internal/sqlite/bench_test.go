package sqlite

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func benchStore(b *testing.B) *Store {
	b.Helper()
	st, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "hub.db")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if _, err := st.CreateWorkspace(context.Background(), "w", ""); err != nil {
		b.Fatal(err)
	}
	return st
}

func points(first, n int) []hub.MetricPoint {
	pts := make([]hub.MetricPoint, n)
	for i := range pts {
		pts[i] = hub.MetricPoint{Name: "m" + strconv.Itoa(i%20), Step: int64(first + i), Value: float64(i)}
	}
	return pts
}

// BenchmarkAppendMetrics measures the store's ingestion path: one
// transaction per batch of 1,000 points. Reported as points/s.
func BenchmarkAppendMetrics(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	r, err := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	if err != nil {
		b.Fatal(err)
	}
	// Steps increase, as in training: every batch appends to each series.
	batches := make([][]hub.MetricPoint, 64)
	for i := range batches {
		batches[i] = points(i*1000, 1000)
	}
	for i := 0; b.Loop(); i++ {
		pts := batches[i%len(batches)]
		for j := range pts {
			pts[j].Step = int64(i*1000 + j)
		}
		if err := st.AppendMetrics(ctx, "w", r.ID, pts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkRawInsert is the limit AppendMetrics is compared to: prepared
// single-row INSERTs into the metrics table, one transaction per 1,000.
func BenchmarkRawInsert(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	r, err := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	if err != nil {
		b.Fatal(err)
	}
	var id int64
	if err := st.DB().QueryRow("SELECT id FROM runs WHERE uid = ?", r.ID).Scan(&id); err != nil {
		b.Fatal(err)
	}
	names := make([]string, 20)
	for i := range names {
		names[i] = "m" + strconv.Itoa(i)
	}
	for n := 0; b.Loop(); n++ {
		tx, err := st.DB().Begin()
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.Prepare("INSERT OR IGNORE INTO metrics (run_id, name, step, time, value) VALUES (?, ?, ?, ?, ?)")
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			if _, err := stmt.Exec(id, names[i%20], int64(n*1000+i), int64(i), float64(i)); err != nil {
				b.Fatal(err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkBestRun measures the top-1 query by a metric over 10,000 runs ×
// 20 metrics (5 steps each here, to keep setup short: the query reads
// latest_metrics only, never the series).
func BenchmarkBestRun(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	for start := 0; start < 10_000; start += 500 {
		var runs []hub.ImportRun
		for i := start; i < start+500; i++ {
			r := hub.ImportRun{RunCreate: hub.RunCreate{Experiment: "e"}}
			for s := range 5 {
				for m := range 20 {
					r.Metrics = append(r.Metrics, hub.MetricPoint{Name: "m" + strconv.Itoa(m), Step: int64(s), Value: float64((i*7919+m*31+s)%10007) / 10007})
				}
			}
			runs = append(runs, r)
		}
		if _, err := st.ImportRuns(ctx, "w", runs); err != nil {
			b.Fatal(err)
		}
	}
	q := hub.RunQuery{Experiment: "e", OrderBy: &hub.Order{Field: hub.Field{Kind: hub.FieldMetric, Name: "m3"}, Desc: true}, Top: 1}
	for b.Loop() {
		runs, err := st.ListRuns(ctx, "w", q)
		if err != nil || len(runs) != 1 {
			b.Fatal(runs, err)
		}
	}
}
