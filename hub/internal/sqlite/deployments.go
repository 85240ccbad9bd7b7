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

// Deployments and agents' desired-state generations: migration 4 in
// schema.go.

var _ hub.DeploymentStore = (*Store)(nil)

const deploymentCols = `w.name, d.name, m.name, v.version, d.alias, v.sha256, v.size,
	d.agents, d.selector, d.options, d.guard, d.created_at, d.updated_at`

const deploymentFrom = ` FROM deployments d JOIN workspaces w ON w.id = d.workspace_id
	JOIN model_versions v ON v.id = d.version_id JOIN models m ON m.id = v.model_id`

func scanDeployment(sc interface{ Scan(...any) error }) (hub.Deployment, error) {
	var d hub.Deployment
	var agents, selector, options, guard string
	var created, updated int64
	if err := sc.Scan(&d.Workspace, &d.Name, &d.Model, &d.Version, &d.Alias, &d.SHA256, &d.Size,
		&agents, &selector, &options, &guard, &created, &updated); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(agents), &d.Agents); err != nil {
		return d, fmt.Errorf("deployment %q: decode agents: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(selector), &d.Selector); err != nil {
		return d, fmt.Errorf("deployment %q: decode selector: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(options), &d.Options); err != nil {
		return d, fmt.Errorf("deployment %q: decode options: %w", d.Name, err)
	}
	if guard != "" {
		d.Guard = new(hub.GuardRules)
		if err := json.Unmarshal([]byte(guard), d.Guard); err != nil {
			return d, fmt.Errorf("deployment %q: decode guard: %w", d.Name, err)
		}
	}
	d.CreatedAt, d.UpdatedAt = fromNanos(created), fromNanos(updated)
	d.Targets = []hub.DeploymentTarget{}
	return d, nil
}

// deploymentRow is a validated spec resolved in a write transaction.
type deploymentRow struct {
	wsID, versionID           int64
	alias                     string
	agents, selector, options string
	guard                     string // JSON, '' for none
}

// resolveDeployment checks spec (name, targeting, options), resolves its
// model ref in ws and checks that every targeted agent exists and, unless
// it is in kept (already a target of the stored deployment), is not
// revoked.
func resolveDeployment(ctx context.Context, tx *sql.Tx, ws string, spec hub.DeploymentSpec, kept []string) (deploymentRow, error) {
	var row deploymentRow
	if err := hub.CheckName("deployment", spec.Name); err != nil {
		return row, err
	}
	if err := hub.CheckTargeting(spec.Agents, spec.Selector); err != nil {
		return row, err
	}
	if err := spec.Options.Check(); err != nil {
		return row, err
	}
	var guard string
	if spec.Guard != nil {
		if err := spec.Guard.Check(); err != nil {
			return row, err
		}
		g, err := json.Marshal(spec.Guard)
		if err != nil {
			return row, err
		}
		guard = string(g)
	}
	wsID, err := workspaceID(ctx, tx, ws)
	if err != nil {
		return row, err
	}
	vid, _, err := resolveVersion(ctx, tx, ws, spec.Model, spec.Ref)
	if err != nil {
		return row, err
	}
	for _, id := range spec.Agents {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT revoked_at FROM agents WHERE id = ?", id).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return row, fmt.Errorf("target agent %q: %w", id, hub.ErrNotFound)
		}
		if err != nil {
			return row, err
		}
		if revoked.Valid && !slices.Contains(kept, id) {
			return row, fmt.Errorf("target agent %q is revoked: %w", id, hub.ErrInvalid)
		}
	}
	agents := spec.Agents
	if agents == nil {
		agents = []string{}
	}
	selector := spec.Selector
	if selector == nil {
		selector = map[string]string{}
	}
	a, err := json.Marshal(agents)
	if err != nil {
		return row, err
	}
	s, err := json.Marshal(selector)
	if err != nil {
		return row, err
	}
	o, err := json.Marshal(spec.Options)
	if err != nil {
		return row, err
	}
	alias := spec.Ref.Alias
	if alias == "" && spec.Ref.Version > 0 {
		alias = spec.Alias
	}
	return deploymentRow{wsID: wsID, versionID: vid, alias: alias, agents: string(a), selector: string(s), options: string(o), guard: guard}, nil
}

// CreateDeployment implements hub.DeploymentStore.
func (s *Store) CreateDeployment(ctx context.Context, ws string, spec hub.DeploymentSpec) (hub.Deployment, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		row, err := resolveDeployment(ctx, tx, ws, spec, nil)
		if err != nil {
			return err
		}
		var other string
		err = tx.QueryRowContext(ctx, "SELECT w.name FROM deployments d JOIN workspaces w ON w.id = d.workspace_id WHERE d.name = ?", spec.Name).Scan(&other)
		if err == nil {
			return fmt.Errorf("deployment %q already exists in workspace %q (names are unique across workspaces: agents serve every deployment at /v2/models/{name}): %w", spec.Name, other, hub.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := nanos(s.now())
		_, err = tx.ExecContext(ctx, `INSERT INTO deployments (workspace_id, name, version_id, alias, agents, selector, options, guard, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row.wsID, spec.Name, row.versionID, row.alias, row.agents, row.selector, row.options, row.guard, now, now)
		return err
	})
	if err != nil {
		return hub.Deployment{}, fmt.Errorf("create deployment %q: %w", spec.Name, err)
	}
	return s.GetDeployment(ctx, ws, spec.Name)
}

// UpdateDeployment implements hub.DeploymentStore.
func (s *Store) UpdateDeployment(ctx context.Context, ws string, spec hub.DeploymentSpec) (hub.Deployment, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var kept []string
		var agents string
		err := tx.QueryRowContext(ctx, `SELECT d.agents FROM deployments d JOIN workspaces w ON w.id = d.workspace_id
			WHERE w.name = ? AND d.name = ?`, ws, spec.Name).Scan(&agents)
		if err == nil {
			err = json.Unmarshal([]byte(agents), &kept)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		row, err := resolveDeployment(ctx, tx, ws, spec, kept)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE deployments SET version_id = ?, alias = ?, agents = ?, selector = ?, options = ?, guard = ?, updated_at = ?
			WHERE workspace_id = ? AND name = ?`, row.versionID, row.alias, row.agents, row.selector, row.options, row.guard, nanos(s.now()), row.wsID, spec.Name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("deployment %q in workspace %q: %w", spec.Name, ws, hub.ErrNotFound)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return hub.Deployment{}, fmt.Errorf("update deployment %q: %w", spec.Name, err)
	}
	return s.GetDeployment(ctx, ws, spec.Name)
}

// GetDeployment implements hub.DeploymentStore.
func (s *Store) GetDeployment(ctx context.Context, ws, name string) (hub.Deployment, error) {
	var d hub.Deployment
	err := s.read(ctx, func(tx *sql.Tx) error {
		if _, err := workspaceID(ctx, tx, ws); err != nil {
			return err
		}
		var err error
		d, err = scanDeployment(tx.QueryRowContext(ctx, "SELECT "+deploymentCols+deploymentFrom+" WHERE w.name = ? AND d.name = ?", ws, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("deployment %q in workspace %q: %w", name, ws, hub.ErrNotFound)
		}
		return err
	})
	return d, err
}

// ListDeployments implements hub.DeploymentStore.
func (s *Store) ListDeployments(ctx context.Context, ws string) ([]hub.Deployment, error) {
	out := []hub.Deployment{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		q, args := "SELECT "+deploymentCols+deploymentFrom+" ORDER BY w.name, d.name", []any{}
		if ws != "" {
			if _, err := workspaceID(ctx, tx, ws); err != nil {
				return err
			}
			q, args = "SELECT "+deploymentCols+deploymentFrom+" WHERE w.name = ? ORDER BY d.name", []any{ws}
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDeployment(rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// DeleteDeployment implements hub.DeploymentStore.
func (s *Store) DeleteDeployment(ctx context.Context, ws, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM deployments WHERE workspace_id = ? AND name = ?", wsID, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("deployment %q in workspace %q: %w", name, ws, hub.ErrNotFound)
			}
			return err
		}
		return nil
	})
}

// DesiredRecords implements hub.DeploymentStore.
func (s *Store) DesiredRecords(ctx context.Context) (map[string]hub.DesiredRecord, error) {
	out := map[string]hub.DesiredRecord{}
	rows, err := s.r.QueryContext(ctx, "SELECT agent_id, generation, digest FROM agent_desired")
	if err != nil {
		return nil, fmt.Errorf("desired records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var r hub.DesiredRecord
		var gen int64
		if err := rows.Scan(&id, &gen, &r.Digest); err != nil {
			return nil, fmt.Errorf("desired records: %w", err)
		}
		r.Generation = uint64(gen)
		out[id] = r
	}
	return out, rows.Err()
}

// maxGeneration bounds desired-state generations (they are stored as
// INTEGER, and no agent sees anywhere near this many changes).
const maxGeneration = 1 << 62

// AdvanceDesired implements hub.DeploymentStore. The generations are
// assigned inside the write transaction from the stored records, so
// concurrent callers (two rollouts over one database, as while an old hub
// drains and a new one starts) never conflict: each sees the other's
// committed generation and continues from it.
func (s *Store) AdvanceDesired(ctx context.Context, digests map[string]string) (map[string]hub.DesiredRecord, error) {
	ids := slices.Sorted(maps.Keys(digests))
	for _, id := range ids {
		if id == "" || digests[id] == "" {
			return nil, fmt.Errorf("advance desired state of agent %q: digest %q: expected an agent id and a non-empty digest: %w", id, digests[id], hub.ErrInvalid)
		}
	}
	out := make(map[string]hub.DesiredRecord, len(ids))
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			var cur hub.DesiredRecord
			var gen int64
			err := tx.QueryRowContext(ctx, "SELECT generation, digest FROM agent_desired WHERE agent_id = ?", id).Scan(&gen, &cur.Digest)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("agent %q: read stored generation: %w", id, err)
			}
			cur.Generation = uint64(gen)
			if cur.Generation > 0 && cur.Digest == digests[id] {
				out[id] = cur // unchanged content keeps its generation
				continue
			}
			if cur.Generation >= maxGeneration {
				return fmt.Errorf("agent %q: stored generation %d: expected below %d: %w", id, cur.Generation, uint64(maxGeneration), hub.ErrInvalid)
			}
			next := hub.DesiredRecord{Generation: cur.Generation + 1, Digest: digests[id]}
			if _, err := tx.ExecContext(ctx, `INSERT INTO agent_desired (agent_id, generation, digest) VALUES (?, ?, ?)
				ON CONFLICT (agent_id) DO UPDATE SET generation = excluded.generation, digest = excluded.digest`, id, int64(next.Generation), next.Digest); err != nil {
				return fmt.Errorf("agent %q: write generation %d: %w", id, next.Generation, err)
			}
			out[id] = next
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("advance desired states: %w", err)
	}
	return out, nil
}

// versionDeployments returns the names of the deployments that use a model
// version (DeleteModelVersion refuses to delete it while there are any).
func versionDeployments(ctx context.Context, q querier, versionID int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name FROM deployments WHERE version_id = ? ORDER BY name", versionID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
