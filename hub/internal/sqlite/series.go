package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/atelier-ml/atelier/hub"
)

// metricRowsPerStmt is how many points one INSERT statement carries:
// binding many rows per statement saves most of the per-statement cost.
const metricRowsPerStmt = 100

var metricInsertSQL = func() string {
	var b strings.Builder
	b.WriteString("INSERT INTO metrics (run_id, name, step, time, value) VALUES ")
	for i := range metricRowsPerStmt {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
	}
	return b.String()
}()

const latestUpsertSQL = `INSERT INTO latest_metrics (run_id, name, value, step, time) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value, step = excluded.step, time = excluded.time
	WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step AND excluded.time >= latest_metrics.time)`

// CheckPoints validates metric points: names follow hub.KeyRule and values
// are finite. The error names the index of the first bad point.
func CheckPoints(points []hub.MetricPoint) error {
	seen := map[string]bool{}
	for i := range points {
		p := &points[i]
		if !seen[p.Name] {
			if err := hub.CheckKey("metric", p.Name); err != nil {
				return fmt.Errorf("metrics[%d]: %w", i, err)
			}
			seen[p.Name] = true
		}
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			return fmt.Errorf("metrics[%d] (%q): value %v is not a finite number: %w", i, p.Name, p.Value, hub.ErrInvalid)
		}
	}
	return nil
}

// AppendMetrics implements hub.RunStore. Points with a zero Time get the
// current time.
func (s *Store) AppendMetrics(ctx context.Context, ws, id string, points []hub.MetricPoint) error {
	if err := CheckPoints(points); err != nil {
		return err
	}
	now := nanos(s.now())
	return s.write(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		return insertMetrics(ctx, tx, ref.id, points, now)
	})
}

// InsertMetricsTx inserts points for the run with internal id runID inside
// tx, maintaining latest_metrics. It is the store's ingestion path, exported
// for benchmarks that measure the database without the API; points must
// have been checked with CheckPoints.
func InsertMetricsTx(ctx context.Context, tx *sql.Tx, runID int64, points []hub.MetricPoint, now int64) error {
	return insertMetrics(ctx, tx, runID, points, now)
}

func insertMetrics(ctx context.Context, tx *sql.Tx, runID int64, points []hub.MetricPoint, now int64) error {
	type latest struct {
		value      float64
		step, time int64
	}
	last := map[string]latest{}
	args := make([]any, 0, 5*metricRowsPerStmt)
	var full *sql.Stmt
	flush := func(n int) error {
		if n == metricRowsPerStmt {
			if full == nil {
				var err error
				if full, err = tx.PrepareContext(ctx, metricInsertSQL); err != nil {
					return err
				}
			}
			_, err := full.ExecContext(ctx, args...)
			return err
		}
		q := metricInsertSQL[:len("INSERT INTO metrics (run_id, name, step, time, value) VALUES ")+n*len("(?,?,?,?,?),")-1]
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	n := 0
	for i := range points {
		p := &points[i]
		t := now
		if !p.Time.IsZero() {
			t = nanos(p.Time)
		}
		args = append(args, runID, p.Name, p.Step, t, p.Value)
		n++
		if l, ok := last[p.Name]; !ok || p.Step > l.step || p.Step == l.step && t >= l.time {
			last[p.Name] = latest{p.Value, p.Step, t}
		}
		if n == metricRowsPerStmt {
			if err := flush(n); err != nil {
				return err
			}
			args, n = args[:0], 0
		}
	}
	if n > 0 {
		if err := flush(n); err != nil {
			return err
		}
	}
	if full != nil {
		full.Close()
	}
	if len(last) == 0 {
		return nil
	}
	up, err := tx.PrepareContext(ctx, latestUpsertSQL)
	if err != nil {
		return err
	}
	defer up.Close()
	for name, l := range last {
		if _, err := up.ExecContext(ctx, runID, name, l.value, l.step, l.time); err != nil {
			return err
		}
	}
	return nil
}

// Metrics implements hub.RunStore.
func (s *Store) Metrics(ctx context.Context, ws, id, name string) ([]hub.MetricPoint, error) {
	out := []hub.MetricPoint{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		q := "SELECT name, step, time, value FROM metrics WHERE run_id = ?"
		args := []any{ref.id}
		if name != "" {
			q += " AND name = ?"
			args = append(args, name)
		}
		rows, err := tx.QueryContext(ctx, q+" ORDER BY name, step, time, rowid", args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p hub.MetricPoint
			var t int64
			if err := rows.Scan(&p.Name, &p.Step, &t, &p.Value); err != nil {
				return err
			}
			p.Time = fromNanos(t)
			out = append(out, p)
		}
		return rows.Err()
	})
	return out, err
}

// AppendLogs implements hub.RunStore. A run in a final status takes no more
// lines (ErrConflict), so that a follower that saw the final status has seen
// every line.
func (s *Store) AppendLogs(ctx context.Context, ws, id string, lines []hub.LogLine) (int64, error) {
	for i, l := range lines {
		if l.Stream != hub.Stdout && l.Stream != hub.Stderr {
			return 0, fmt.Errorf("lines[%d]: stream %q: expected stdout or stderr: %w", i, l.Stream, hub.ErrInvalid)
		}
		if len(l.Text) > hub.MaxLogLine {
			return 0, fmt.Errorf("lines[%d]: %d bytes exceed the limit of %d per line: %w", i, len(l.Text), hub.MaxLogLine, hub.ErrInvalid)
		}
	}
	now := nanos(s.now())
	var last int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		if ref.status.Final() {
			return fmt.Errorf("run %q is %s; a finished run takes no more log lines: %w", id, ref.status, hub.ErrConflict)
		}
		if err := tx.QueryRowContext(ctx, "UPDATE runs SET log_seq = log_seq + ? WHERE id = ? RETURNING log_seq", len(lines), ref.id).Scan(&last); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, "INSERT INTO logs (run_id, seq, stream, time, text) VALUES (?, ?, ?, ?, ?)")
		if err != nil {
			return err
		}
		defer stmt.Close()
		seq := last - int64(len(lines))
		for _, l := range lines {
			seq++
			t := now
			if !l.Time.IsZero() {
				t = nanos(l.Time)
			}
			if _, err := stmt.ExecContext(ctx, ref.id, seq, l.Stream, t, l.Text); err != nil {
				return err
			}
		}
		return nil
	})
	return last, err
}

// Logs implements hub.RunStore.
func (s *Store) Logs(ctx context.Context, ws, id string, after int64, limit int) ([]hub.LogLine, hub.RunStatus, error) {
	var out []hub.LogLine
	var status hub.RunStatus
	err := s.read(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		status = ref.status
		rows, err := tx.QueryContext(ctx, "SELECT seq, stream, time, text FROM logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", ref.id, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l hub.LogLine
			var t int64
			if err := rows.Scan(&l.Seq, &l.Stream, &t, &l.Text); err != nil {
				return err
			}
			l.Time = fromNanos(t)
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, status, err
}
