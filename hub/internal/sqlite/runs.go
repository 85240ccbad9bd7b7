package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/atelier-ml/atelier/hub"
)

func validStatus(s hub.RunStatus) bool {
	switch s {
	case hub.StatusQueued, hub.StatusRunning, hub.StatusCompleted, hub.StatusFailed, hub.StatusCanceled:
		return true
	}
	return false
}

func checkKV(what string, kv map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if err := hub.CheckKey(what, k); err != nil {
			return err
		}
		if err := hub.CheckValue(what, k, kv[k]); err != nil {
			return err
		}
	}
	return nil
}

// CreateRun implements hub.RunStore.
func (s *Store) CreateRun(ctx context.Context, ws string, rc hub.RunCreate) (hub.Run, error) {
	if err := checkRunCreate(&rc); err != nil {
		return hub.Run{}, err
	}
	uid := newID()
	now := nanos(s.now())
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := createRun(ctx, tx, ws, uid, rc, now)
		return err
	})
	if err != nil {
		return hub.Run{}, fmt.Errorf("create run: %w", err)
	}
	return s.GetRun(ctx, ws, uid)
}

// ImportRuns creates runs with their metrics in one transaction (all or
// nothing) and returns their ids. It is meant for bulk loads (imports,
// benchmarks): one commit for many runs.
func (s *Store) ImportRuns(ctx context.Context, ws string, runs []hub.ImportRun) ([]string, error) {
	ids := make([]string, len(runs))
	for i := range runs {
		if err := checkRunCreate(&runs[i].RunCreate); err != nil {
			return nil, fmt.Errorf("runs[%d]: %w", i, err)
		}
		if err := CheckPoints(runs[i].Metrics); err != nil {
			return nil, fmt.Errorf("runs[%d]: %w", i, err)
		}
		ids[i] = newID()
	}
	now := nanos(s.now())
	err := s.write(ctx, func(tx *sql.Tx) error {
		for i, r := range runs {
			id, err := createRun(ctx, tx, ws, ids[i], r.RunCreate, now)
			if err != nil {
				return fmt.Errorf("runs[%d]: %w", i, err)
			}
			if err := insertMetrics(ctx, tx, id, r.Metrics, now); err != nil {
				return fmt.Errorf("runs[%d]: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import runs: %w", err)
	}
	return ids, nil
}

func checkRunCreate(rc *hub.RunCreate) error {
	if err := hub.CheckName("experiment", rc.Experiment); err != nil {
		return err
	}
	if rc.Status == "" {
		rc.Status = hub.StatusQueued
	}
	if !validStatus(rc.Status) {
		return fmt.Errorf("status %q: expected queued, running, completed, failed or canceled: %w", rc.Status, hub.ErrInvalid)
	}
	if len(rc.Name) > hub.MaxRunNameLn {
		return fmt.Errorf("run name of %d bytes exceeds the limit of %d: %w", len(rc.Name), hub.MaxRunNameLn, hub.ErrInvalid)
	}
	if err := checkKV("param", rc.Params); err != nil {
		return err
	}
	return checkKV("tag", rc.Tags)
}

// createRun inserts a checked run (and its experiment if missing) and
// returns its internal id.
func createRun(ctx context.Context, tx *sql.Tx, ws, uid string, rc hub.RunCreate, now int64) (int64, error) {
	cmd := ""
	if len(rc.Command) > 0 {
		b, _ := json.Marshal(rc.Command)
		cmd = string(b)
	}
	wsID, err := workspaceID(ctx, tx, ws)
	if err != nil {
		return 0, err
	}
	expID, err := experimentID(ctx, tx, wsID, ws, rc.Experiment)
	if errors.Is(err, hub.ErrNotFound) {
		res, err2 := tx.ExecContext(ctx, "INSERT INTO experiments (workspace_id, name, created_at) VALUES (?, ?, ?)", wsID, rc.Experiment, now)
		if err2 != nil {
			return 0, err2
		}
		expID, err = res.LastInsertId()
	}
	if err != nil {
		return 0, err
	}
	var parent sql.NullInt64
	if rc.ParentID != "" {
		p, err := findRun(ctx, tx, ws, rc.ParentID)
		if errors.Is(err, hub.ErrNotFound) {
			return 0, fmt.Errorf("parent run %q in workspace %q: %w", rc.ParentID, ws, hub.ErrNotFound)
		}
		if err != nil {
			return 0, err
		}
		parent = sql.NullInt64{Int64: p.id, Valid: true}
	}
	var started, ended sql.NullInt64
	if rc.Status == hub.StatusRunning {
		started = sql.NullInt64{Int64: now, Valid: true}
	}
	if rc.Status.Final() {
		ended = sql.NullInt64{Int64: now, Valid: true}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO runs
		(uid, workspace_id, experiment_id, name, parent_id, status, command, created_at, started_at, ended_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		uid, wsID, expID, rc.Name, parent, string(rc.Status), cmd, now, started, ended)
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	if err := insertKV(ctx, tx, "params", id, rc.Params); err != nil {
		return 0, err
	}
	return id, insertKV(ctx, tx, "tags", id, rc.Tags)
}

// insertKV inserts into params or tags (table is one of those constants).
func insertKV(ctx context.Context, tx *sql.Tx, table string, id int64, kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, "INSERT OR REPLACE INTO "+table+" (run_id, key, value) VALUES (?, ?, ?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if _, err := stmt.ExecContext(ctx, id, k, kv[k]); err != nil {
			return err
		}
	}
	return nil
}

const runCols = `r.id, r.uid, e.name, r.name, COALESCE(p.uid, ''), r.status, r.command, r.exit_code, r.error,
	r.created_at, r.started_at, r.ended_at, r.snapshot_sha, r.snapshot_size`

const runFrom = ` FROM runs r JOIN experiments e ON e.id = r.experiment_id LEFT JOIN runs p ON p.id = r.parent_id `

// loadRuns loads the full runs with the given internal ids, in that order.
func loadRuns(ctx context.Context, tx *sql.Tx, ws string, ids []int64) ([]hub.Run, error) {
	out := make([]hub.Run, 0, len(ids))
	index := make(map[int64]int, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		ph := make([]byte, 0, 2*len(chunk))
		for i, id := range chunk {
			args[i] = id
			if i > 0 {
				ph = append(ph, ',')
			}
			ph = append(ph, '?')
		}
		in := " IN (" + string(ph) + ")"
		rows, err := tx.QueryContext(ctx, "SELECT "+runCols+runFrom+"WHERE r.id"+in, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				r              hub.Run
				id, created    int64
				cmd            string
				exit           sql.NullInt64
				started, ended sql.NullInt64
				snapSHA        sql.NullString
				snapSize       sql.NullInt64
				status         string
			)
			if err := rows.Scan(&id, &r.ID, &r.Experiment, &r.Name, &r.ParentID, &status, &cmd, &exit, &r.Error,
				&created, &started, &ended, &snapSHA, &snapSize); err != nil {
				rows.Close()
				return nil, err
			}
			r.Workspace = ws
			r.Status = hub.RunStatus(status)
			if cmd != "" {
				_ = json.Unmarshal([]byte(cmd), &r.Command)
			}
			if exit.Valid {
				c := int(exit.Int64)
				r.ExitCode = &c
			}
			r.CreatedAt = fromNanos(created)
			r.StartedAt = fromNullNanos(started)
			r.EndedAt = fromNullNanos(ended)
			if snapSHA.Valid {
				r.Snapshot = &hub.Blob{SHA256: snapSHA.String, Size: snapSize.Int64}
			}
			r.Params = map[string]string{}
			r.Tags = map[string]string{}
			r.Metrics = map[string]float64{}
			r.Artifacts = []hub.Artifact{}
			index[id] = len(out)
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		get := func(id int64) *hub.Run { return &out[index[id]] }
		for _, part := range []struct {
			q    string
			scan func(rows *sql.Rows) error
		}{
			{"SELECT run_id, key, value FROM params WHERE run_id" + in, func(rows *sql.Rows) error {
				var id int64
				var k, v string
				if err := rows.Scan(&id, &k, &v); err != nil {
					return err
				}
				get(id).Params[k] = v
				return nil
			}},
			{"SELECT run_id, key, value FROM tags WHERE run_id" + in, func(rows *sql.Rows) error {
				var id int64
				var k, v string
				if err := rows.Scan(&id, &k, &v); err != nil {
					return err
				}
				get(id).Tags[k] = v
				return nil
			}},
			{"SELECT run_id, name, value FROM latest_metrics WHERE run_id" + in, func(rows *sql.Rows) error {
				var id int64
				var k string
				var v float64
				if err := rows.Scan(&id, &k, &v); err != nil {
					return err
				}
				get(id).Metrics[k] = v
				return nil
			}},
			{"SELECT run_id, path, size, sha256 FROM artifacts WHERE run_id" + in + " ORDER BY run_id, path", func(rows *sql.Rows) error {
				var id int64
				var a hub.Artifact
				if err := rows.Scan(&id, &a.Path, &a.Size, &a.SHA256); err != nil {
					return err
				}
				r := get(id)
				r.Artifacts = append(r.Artifacts, a)
				return nil
			}},
		} {
			rows, err := tx.QueryContext(ctx, part.q, args...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				if err := part.scan(rows); err != nil {
					rows.Close()
					return nil, err
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
	}
	// Restore the requested order.
	pos := make(map[int64]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	sorted := make([]hub.Run, len(out))
	for id, i := range index {
		sorted[pos[id]] = out[i]
	}
	return sorted, nil
}
