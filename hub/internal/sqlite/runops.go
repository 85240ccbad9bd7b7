package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/atelier-ml/atelier/hub"
)

// GetRun implements hub.RunStore.
func (s *Store) GetRun(ctx context.Context, ws, id string) (hub.Run, error) {
	var run hub.Run
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		run, err = getRun(ctx, tx, ws, id)
		return err
	})
	return run, err
}

func getRun(ctx context.Context, tx *sql.Tx, ws, id string) (hub.Run, error) {
	ref, err := findRun(ctx, tx, ws, id)
	if err != nil {
		return hub.Run{}, err
	}
	runs, err := loadRuns(ctx, tx, ws, []int64{ref.id})
	if err != nil {
		return hub.Run{}, fmt.Errorf("load run %q: %w", id, err)
	}
	return runs[0], nil
}

// writeRun runs fn on the run in a write transaction and returns the run as
// committed.
func (s *Store) writeRun(ctx context.Context, ws, id string, fn func(tx *sql.Tx, ref runRef) error) (hub.Run, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		return fn(tx, ref)
	})
	if err != nil {
		return hub.Run{}, err
	}
	return s.GetRun(ctx, ws, id)
}

// UpdateRun implements hub.RunStore.
func (s *Store) UpdateRun(ctx context.Context, ws, id string, u hub.RunUpdate) (hub.Run, error) {
	if !validStatus(u.Status) {
		return hub.Run{}, fmt.Errorf("status %q: expected queued, running, completed, failed or canceled: %w", u.Status, hub.ErrInvalid)
	}
	if len(u.Error) > hub.MaxValueLen {
		return hub.Run{}, fmt.Errorf("error message of %d bytes exceeds the limit of %d: %w", len(u.Error), hub.MaxValueLen, hub.ErrInvalid)
	}
	now := nanos(s.now())
	return s.writeRun(ctx, ws, id, func(tx *sql.Tx, ref runRef) error {
		from, to := ref.status, u.Status
		switch {
		case from == to:
			return nil // a retried request: accepted, changes nothing
		case from == hub.StatusQueued && (to == hub.StatusRunning || to.Final()):
		case from == hub.StatusRunning && to.Final():
		default:
			return fmt.Errorf("run %q: status cannot change from %s to %s (allowed: queued → running → completed|failed|canceled, queued → a final status): %w", id, from, to, hub.ErrConflict)
		}
		var exit sql.NullInt64
		if u.ExitCode != nil {
			exit = sql.NullInt64{Int64: int64(*u.ExitCode), Valid: true}
		}
		_, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?,
			started_at = CASE WHEN ? = 'running' THEN ? ELSE started_at END,
			ended_at = CASE WHEN ? THEN ? ELSE ended_at END,
			exit_code = COALESCE(?, exit_code),
			error = CASE WHEN ? != '' THEN ? ELSE error END
			WHERE id = ?`,
			string(to), string(to), now, to.Final(), now, exit, u.Error, u.Error, ref.id)
		return err
	})
}

// SetParams implements hub.RunStore.
func (s *Store) SetParams(ctx context.Context, ws, id string, params map[string]string) (hub.Run, error) {
	if err := checkKV("param", params); err != nil {
		return hub.Run{}, err
	}
	return s.writeRun(ctx, ws, id, func(tx *sql.Tx, ref runRef) error {
		fresh := map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(params)) {
			var old string
			err := tx.QueryRowContext(ctx, "SELECT value FROM params WHERE run_id = ? AND key = ?", ref.id, k).Scan(&old)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				fresh[k] = params[k]
			case err != nil:
				return err
			case old != params[k]:
				return fmt.Errorf("run %q: %w", id, &hub.ParamConflictError{Key: k, Old: old, New: params[k]})
			}
		}
		return insertKV(ctx, tx, "params", ref.id, fresh)
	})
}

// SetTags implements hub.RunStore.
func (s *Store) SetTags(ctx context.Context, ws, id string, tags map[string]string) (hub.Run, error) {
	if err := checkKV("tag", tags); err != nil {
		return hub.Run{}, err
	}
	return s.writeRun(ctx, ws, id, func(tx *sql.Tx, ref runRef) error {
		return insertKV(ctx, tx, "tags", ref.id, tags)
	})
}

// DeleteTag implements hub.RunStore. Deleting an absent tag is
// ErrNotFound.
func (s *Store) DeleteTag(ctx context.Context, ws, id, key string) (hub.Run, error) {
	return s.writeRun(ctx, ws, id, func(tx *sql.Tx, ref runRef) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM tags WHERE run_id = ? AND key = ?", ref.id, key)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("tag %q of run %q: %w", key, id, hub.ErrNotFound)
		}
		return nil
	})
}

// PutArtifact implements hub.RunStore.
func (s *Store) PutArtifact(ctx context.Context, ws, id string, a hub.Artifact) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT OR REPLACE INTO artifacts (run_id, path, sha256, size) VALUES (?, ?, ?, ?)", ref.id, a.Path, a.SHA256, a.Size)
		return err
	})
}

// GetArtifact implements hub.RunStore.
func (s *Store) GetArtifact(ctx context.Context, ws, id, path string) (hub.Artifact, error) {
	a := hub.Artifact{Path: path}
	err := s.read(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, "SELECT sha256, size FROM artifacts WHERE run_id = ? AND path = ?", ref.id, path).Scan(&a.SHA256, &a.Size)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("artifact %q of run %q: %w", path, id, hub.ErrNotFound)
		}
		return err
	})
	return a, err
}

// ListArtifacts implements hub.RunStore.
func (s *Store) ListArtifacts(ctx context.Context, ws, id string) ([]hub.Artifact, error) {
	run, err := s.GetRun(ctx, ws, id)
	return run.Artifacts, err
}

// SetSnapshot implements hub.RunStore.
func (s *Store) SetSnapshot(ctx context.Context, ws, id string, b hub.Blob) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		ref, err := findRun(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE runs SET snapshot_sha = ?, snapshot_size = ? WHERE id = ?", b.SHA256, b.Size, ref.id)
		return err
	})
}
