package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/atelier-ml/atelier/hub"
)

const workspaceCols = `w.name, w.description, w.created_at,
	(SELECT count(*) FROM experiments e WHERE e.workspace_id = w.id),
	(SELECT count(*) FROM runs r WHERE r.workspace_id = w.id)`

func scanWorkspace(sc interface{ Scan(...any) error }) (hub.Workspace, error) {
	var w hub.Workspace
	var created int64
	err := sc.Scan(&w.Name, &w.Description, &created, &w.Experiments, &w.Runs)
	w.CreatedAt = fromNanos(created)
	return w, err
}

// CreateWorkspace implements hub.WorkspaceStore.
func (s *Store) CreateWorkspace(ctx context.Context, name, description string) (hub.Workspace, error) {
	if err := hub.CheckName("workspace", name); err != nil {
		return hub.Workspace{}, err
	}
	if len(description) > hub.MaxValueLen {
		return hub.Workspace{}, fmt.Errorf("workspace %q: description of %d bytes exceeds the limit of %d: %w", name, len(description), hub.MaxValueLen, hub.ErrInvalid)
	}
	now := s.now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO workspaces (name, description, created_at) VALUES (?, ?, ?)", name, description, nanos(now))
		return err
	})
	if isUnique(err) {
		return hub.Workspace{}, fmt.Errorf("workspace %q already exists: %w", name, hub.ErrConflict)
	}
	if err != nil {
		return hub.Workspace{}, fmt.Errorf("create workspace %q: %w", name, err)
	}
	return hub.Workspace{Name: name, Description: description, CreatedAt: fromNanos(nanos(now))}, nil
}

// ListWorkspaces implements hub.WorkspaceStore.
func (s *Store) ListWorkspaces(ctx context.Context) ([]hub.Workspace, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+workspaceCols+" FROM workspaces w ORDER BY w.name")
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	defer rows.Close()
	out := []hub.Workspace{}
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, fmt.Errorf("list workspaces: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// GetWorkspace implements hub.WorkspaceStore.
func (s *Store) GetWorkspace(ctx context.Context, name string) (hub.Workspace, error) {
	w, err := scanWorkspace(s.r.QueryRowContext(ctx, "SELECT "+workspaceCols+" FROM workspaces w WHERE w.name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("workspace %q: %w", name, hub.ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("get workspace %q: %w", name, err)
	}
	return w, nil
}

// DeleteWorkspace implements hub.WorkspaceStore.
func (s *Store) DeleteWorkspace(ctx context.Context, name string, force bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		id, err := workspaceID(ctx, tx, name)
		if err != nil {
			return err
		}
		if !force {
			var exps, runs, models int
			if err := tx.QueryRowContext(ctx, `SELECT
				(SELECT count(*) FROM experiments WHERE workspace_id = ?),
				(SELECT count(*) FROM runs WHERE workspace_id = ?),
				(SELECT count(*) FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.workspace_id = ?)`, id, id, id).Scan(&exps, &runs, &models); err != nil {
				return fmt.Errorf("delete workspace %q: %w", name, err)
			}
			if exps > 0 || runs > 0 || models > 0 {
				return fmt.Errorf("workspace %q holds %d experiments, %d runs and %d model versions; delete with force=true to delete them too: %w", name, exps, runs, models, hub.ErrConflict)
			}
		}
		// Delete bottom-up so the cascade does not walk one huge tree.
		for _, q := range []string{
			"DELETE FROM metrics WHERE run_id IN (SELECT id FROM runs WHERE workspace_id = ?)",
			"DELETE FROM runs WHERE workspace_id = ?",
			"DELETE FROM experiments WHERE workspace_id = ?",
			"DELETE FROM workspaces WHERE id = ?",
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("delete workspace %q: %w", name, err)
			}
		}
		return nil
	})
}

func experimentID(ctx context.Context, q querier, wsID int64, ws, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, "SELECT id FROM experiments WHERE workspace_id = ? AND name = ?", wsID, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("experiment %q in workspace %q: %w", name, ws, hub.ErrNotFound)
	}
	return id, err
}

// CreateExperiment implements hub.WorkspaceStore.
func (s *Store) CreateExperiment(ctx context.Context, ws, name string) (hub.Experiment, error) {
	if err := hub.CheckName("experiment", name); err != nil {
		return hub.Experiment{}, err
	}
	now := fromNanos(nanos(s.now()))
	err := s.write(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO experiments (workspace_id, name, created_at) VALUES (?, ?, ?)", wsID, name, nanos(now))
		if isUnique(err) {
			return fmt.Errorf("experiment %q in workspace %q already exists: %w", name, ws, hub.ErrConflict)
		}
		return err
	})
	if err != nil {
		return hub.Experiment{}, fmt.Errorf("create experiment: %w", err)
	}
	return hub.Experiment{Workspace: ws, Name: name, CreatedAt: now}, nil
}

const experimentCols = `e.name, e.created_at, (SELECT count(*) FROM runs r WHERE r.experiment_id = e.id)`

// ListExperiments implements hub.WorkspaceStore.
func (s *Store) ListExperiments(ctx context.Context, ws string) ([]hub.Experiment, error) {
	out := []hub.Experiment{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+experimentCols+" FROM experiments e WHERE e.workspace_id = ? ORDER BY e.name", wsID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e := hub.Experiment{Workspace: ws}
			var created int64
			if err := rows.Scan(&e.Name, &created, &e.Runs); err != nil {
				return err
			}
			e.CreatedAt = fromNanos(created)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list experiments: %w", err)
	}
	return out, nil
}

// GetExperiment implements hub.WorkspaceStore.
func (s *Store) GetExperiment(ctx context.Context, ws, name string) (hub.Experiment, error) {
	e := hub.Experiment{Workspace: ws}
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		var created int64
		err = tx.QueryRowContext(ctx, "SELECT "+experimentCols+" FROM experiments e WHERE e.workspace_id = ? AND e.name = ?", wsID, name).Scan(&e.Name, &created, &e.Runs)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("experiment %q in workspace %q: %w", name, ws, hub.ErrNotFound)
		}
		e.CreatedAt = fromNanos(created)
		return err
	})
	if err != nil {
		return hub.Experiment{}, fmt.Errorf("get experiment: %w", err)
	}
	return e, nil
}
