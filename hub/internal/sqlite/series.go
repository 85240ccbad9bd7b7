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

const metricInsertPrefix = "INSERT OR IGNORE INTO metrics (run_id, name, step, time, value) VALUES "

var metricInsertSQL = func() string {
	var b strings.Builder
	b.WriteString(metricInsertPrefix)
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
//
// Batches from concurrent callers are group-committed: one writer
// goroutine takes every batch waiting, writes each under its own SAVEPOINT
// (a failing batch is rolled back alone), commits once, then answers each
// caller. A caller is answered only after the commit that holds its batch,
// so the durability promise is unchanged; the fsync is shared.
func (s *Store) AppendMetrics(ctx context.Context, ws, id string, points []hub.MetricPoint) error {
	if err := CheckPoints(points); err != nil {
		return err
	}
	req := &appendReq{ctx: ctx, ws: ws, id: id, points: points, now: nanos(s.now()), done: make(chan error, 1)}
	select {
	case s.appends <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	// Once handed over, wait for the outcome even if ctx ends: the batch
	// may be committed, and the caller must not be told otherwise.
	return <-req.done
}

type appendReq struct {
	ctx    context.Context
	ws, id string
	points []hub.MetricPoint
	now    int64
	done   chan error
}

// Group commit bounds.
const (
	maxGroupBatches = 64
	maxGroupPoints  = 200_000
)

// appendLoop is the metrics writer; it runs from Open until Close.
func (s *Store) appendLoop() {
	defer close(s.appendDone)
	for {
		var req *appendReq
		select {
		case req = <-s.appends:
		case <-s.closing:
			return
		}
		group := []*appendReq{req}
		n := len(req.points)
	drain:
		for len(group) < maxGroupBatches && n < maxGroupPoints {
			select {
			case r := <-s.appends:
				group = append(group, r)
				n += len(r.points)
			default:
				break drain
			}
		}
		errs := s.commitGroup(group)
		for i, r := range group {
			r.done <- errs[i]
		}
	}
}

func (s *Store) commitGroup(group []*appendReq) []error {
	errs := make([]error, len(group))
	ctx := context.Background() // one caller's cancellation must not undo the others'
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("append metrics: %w", err)
			}
		}
		return errs
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	single := len(group) == 1
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if !single {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT batch"); err != nil {
				return fail(err)
			}
		}
		err := func() error {
			ref, err := findRun(ctx, tx, r.ws, r.id)
			if err != nil {
				return err
			}
			return insertMetrics(ctx, tx, ref.id, r.points, r.now)
		}()
		if err != nil {
			errs[i] = err
			if single {
				return errs
			}
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO batch"); err != nil {
				return fail(err)
			}
		}
		if !single {
			if _, err := tx.ExecContext(ctx, "RELEASE batch"); err != nil {
				return fail(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return errs
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
		q := metricInsertSQL[:len("INSERT OR IGNORE INTO metrics (run_id, name, step, time, value) VALUES ")+n*len("(?,?,?,?,?),")-1]
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
		rows, err := tx.QueryContext(ctx, q+" ORDER BY name, step, time, value", args...)
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
