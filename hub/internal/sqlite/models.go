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

// The model registry: models (one row per name and workspace, holding the
// version counter), model_versions, their tags, and aliases. See migration
// 2 in schema.go.

var _ hub.ModelStore = (*Store)(nil)

// modelRef is a model's internal id.
type modelRef struct {
	id        int64
	createdAt int64
}

func findModel(ctx context.Context, q querier, ws, name string) (int64, modelRef, error) {
	wsID, err := workspaceID(ctx, q, ws)
	if err != nil {
		return 0, modelRef{}, err
	}
	var m modelRef
	err = q.QueryRowContext(ctx, "SELECT id, created_at FROM models WHERE workspace_id = ? AND name = ?", wsID, name).Scan(&m.id, &m.createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return wsID, modelRef{}, fmt.Errorf("model %q in workspace %q: %w", name, ws, hub.ErrNotFound)
	}
	return wsID, m, err
}

// resolveVersion returns the internal id and number of the version ref
// selects.
func resolveVersion(ctx context.Context, q querier, ws, name string, ref hub.VersionRef) (int64, int, error) {
	_, m, err := findModel(ctx, q, ws, name)
	if err != nil {
		return 0, 0, err
	}
	var id int64
	var v int
	switch {
	case ref.Alias != "":
		err = q.QueryRowContext(ctx, `SELECT v.id, v.version FROM model_aliases a JOIN model_versions v ON v.id = a.version_id
			WHERE a.model_id = ? AND a.alias = ?`, m.id, ref.Alias).Scan(&id, &v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, fmt.Errorf("alias %q of model %q: %w", ref.Alias, name, hub.ErrNotFound)
		}
	case ref.Version > 0:
		err = q.QueryRowContext(ctx, "SELECT id, version FROM model_versions WHERE model_id = ? AND version = ?", m.id, ref.Version).Scan(&id, &v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, fmt.Errorf("version %d of model %q: %w", ref.Version, name, hub.ErrNotFound)
		}
	default:
		err = q.QueryRowContext(ctx, "SELECT id, version FROM model_versions WHERE model_id = ? ORDER BY version DESC LIMIT 1", m.id).Scan(&id, &v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, fmt.Errorf("model %q in workspace %q has no versions: %w", name, ws, hub.ErrNotFound)
		}
	}
	return id, v, err
}

func checkModelCreate(mc *hub.ModelVersionCreate) error {
	if err := hub.CheckName("model", mc.Name); err != nil {
		return err
	}
	if len(mc.Blob.SHA256) != 64 || mc.Blob.Size < 0 {
		return fmt.Errorf("model %q: blob %q of %d bytes: expected a sha256 hex digest: %w", mc.Name, mc.Blob.SHA256, mc.Blob.Size, hub.ErrInvalid)
	}
	if len(mc.Description) > hub.MaxValueLen {
		return fmt.Errorf("model %q: description of %d bytes exceeds the limit of %d: %w", mc.Name, len(mc.Description), hub.MaxValueLen, hub.ErrInvalid)
	}
	if mc.RunID == "" && mc.ArtifactPath != "" {
		return fmt.Errorf("model %q: artifact path %q without a run: %w", mc.Name, mc.ArtifactPath, hub.ErrInvalid)
	}
	return checkKV("tag", mc.Tags)
}

// CreateModelVersion implements hub.ModelStore. The version number comes
// from a per-model counter incremented in the same write transaction, so
// concurrent registrations of one name get distinct, increasing versions.
func (s *Store) CreateModelVersion(ctx context.Context, ws string, mc hub.ModelVersionCreate) (hub.ModelVersion, error) {
	if err := checkModelCreate(&mc); err != nil {
		return hub.ModelVersion{}, err
	}
	sig, err := json.Marshal(signature{Inputs: mc.Inputs, Outputs: mc.Outputs})
	if err != nil {
		return hub.ModelVersion{}, fmt.Errorf("model %q: encode signature: %w", mc.Name, err)
	}
	var versionID int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		var experiment string
		if mc.RunID != "" {
			err := tx.QueryRowContext(ctx, `SELECT e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id
				WHERE r.uid = ? AND r.workspace_id = ?`, mc.RunID, wsID).Scan(&experiment)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("run %q in workspace %q: %w", mc.RunID, ws, hub.ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		now := nanos(s.now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO models (workspace_id, name, created_at, last_version) VALUES (?, ?, ?, 0)
			ON CONFLICT (workspace_id, name) DO NOTHING`, wsID, mc.Name, now); err != nil {
			return err
		}
		var modelID int64
		var version int
		if err := tx.QueryRowContext(ctx, `UPDATE models SET last_version = last_version + 1
			WHERE workspace_id = ? AND name = ? RETURNING id, last_version`, wsID, mc.Name).Scan(&modelID, &version); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO model_versions (model_id, version, sha256, size, description,
			ir_version, opset, producer, signature, run_uid, experiment, artifact_path, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			modelID, version, mc.Blob.SHA256, mc.Blob.Size, mc.Description, mc.IRVersion, mc.Opset, mc.Producer,
			string(sig), mc.RunID, experiment, mc.ArtifactPath, now)
		if err != nil {
			return err
		}
		if versionID, err = res.LastInsertId(); err != nil {
			return err
		}
		return setVersionTags(ctx, tx, versionID, mc.Tags)
	})
	if err != nil {
		return hub.ModelVersion{}, fmt.Errorf("register model %q: %w", mc.Name, err)
	}
	return s.versionByID(ctx, ws, versionID)
}

// signature is the JSON stored in model_versions.signature.
type signature struct {
	Inputs  []hub.TensorSpec `json:"inputs"`
	Outputs []hub.TensorSpec `json:"outputs"`
}

func setVersionTags(ctx context.Context, tx *sql.Tx, versionID int64, tags map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if _, err := tx.ExecContext(ctx, "INSERT OR REPLACE INTO model_version_tags (version_id, key, value) VALUES (?, ?, ?)", versionID, k, tags[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) versionByID(ctx context.Context, ws string, id int64) (hub.ModelVersion, error) {
	var mv hub.ModelVersion
	err := s.read(ctx, func(tx *sql.Tx) error {
		vs, err := loadVersions(ctx, tx, ws, "v.id = ?", id)
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			return fmt.Errorf("model version %d vanished: %w", id, hub.ErrNotFound)
		}
		mv = vs[0]
		return nil
	})
	return mv, err
}

// loadVersions loads full versions (with tags and aliases) matching where,
// newest first.
func loadVersions(ctx context.Context, q querier, ws, where string, args ...any) ([]hub.ModelVersion, error) {
	rows, err := q.QueryContext(ctx, `SELECT v.id, m.name, v.version, v.sha256, v.size, v.description, v.ir_version,
		v.opset, v.producer, v.signature, v.run_uid, v.experiment, v.artifact_path, v.created_at
		FROM model_versions v JOIN models m ON m.id = v.model_id WHERE `+where+` ORDER BY m.name, v.version DESC`, args...)
	if err != nil {
		return nil, err
	}
	var (
		out []hub.ModelVersion
		ids []int64
	)
	for rows.Next() {
		var (
			mv      hub.ModelVersion
			id, at  int64
			sigJSON string
		)
		if err := rows.Scan(&id, &mv.Name, &mv.Version, &mv.SHA256, &mv.Size, &mv.Description, &mv.IRVersion, &mv.Opset,
			&mv.Producer, &sigJSON, &mv.RunID, &mv.Experiment, &mv.ArtifactPath, &at); err != nil {
			rows.Close()
			return nil, err
		}
		var sig signature
		if err := json.Unmarshal([]byte(sigJSON), &sig); err != nil {
			rows.Close()
			return nil, fmt.Errorf("model %q version %d: stored signature: %w", mv.Name, mv.Version, err)
		}
		mv.Workspace, mv.Inputs, mv.Outputs, mv.CreatedAt = ws, sig.Inputs, sig.Outputs, fromNanos(at)
		mv.Tags, mv.Aliases = map[string]string{}, []string{}
		out = append(out, mv)
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, id := range ids {
		if err := loadVersionExtras(ctx, q, id, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func loadVersionExtras(ctx context.Context, q querier, id int64, mv *hub.ModelVersion) error {
	rows, err := q.QueryContext(ctx, "SELECT key, value FROM model_version_tags WHERE version_id = ?", id)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		mv.Tags[k] = v
	}
	if err := rows.Close(); err != nil {
		return err
	}
	rows, err = q.QueryContext(ctx, "SELECT alias FROM model_aliases WHERE version_id = ? ORDER BY alias", id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return err
		}
		mv.Aliases = append(mv.Aliases, a)
	}
	return rows.Err()
}

// ListModels implements hub.ModelStore.
func (s *Store) ListModels(ctx context.Context, ws string) ([]hub.Model, error) {
	var out []hub.Model
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		latest, err := loadVersions(ctx, tx, ws, `m.workspace_id = ? AND v.version =
			(SELECT max(version) FROM model_versions WHERE model_id = m.id)`, wsID)
		if err != nil {
			return err
		}
		for _, mv := range latest {
			m := hub.Model{Workspace: ws, Name: mv.Name, Latest: mv, Aliases: map[string]int{}}
			var created int64
			if err := tx.QueryRowContext(ctx, `SELECT m.created_at, (SELECT count(*) FROM model_versions WHERE model_id = m.id)
				FROM models m WHERE m.workspace_id = ? AND m.name = ?`, wsID, mv.Name).Scan(&created, &m.Versions); err != nil {
				return err
			}
			m.CreatedAt = fromNanos(created)
			rows, err := tx.QueryContext(ctx, `SELECT a.alias, v.version FROM model_aliases a JOIN model_versions v ON v.id = a.version_id
				JOIN models m ON m.id = a.model_id WHERE m.workspace_id = ? AND m.name = ?`, wsID, mv.Name)
			if err != nil {
				return err
			}
			for rows.Next() {
				var a string
				var v int
				if err := rows.Scan(&a, &v); err != nil {
					rows.Close()
					return err
				}
				m.Aliases[a] = v
			}
			if err := rows.Close(); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// ListModelVersions implements hub.ModelStore.
func (s *Store) ListModelVersions(ctx context.Context, ws, name string) ([]hub.ModelVersion, error) {
	var out []hub.ModelVersion
	err := s.read(ctx, func(tx *sql.Tx) error {
		_, m, err := findModel(ctx, tx, ws, name)
		if err != nil {
			return err
		}
		out, err = loadVersions(ctx, tx, ws, "v.model_id = ?", m.id)
		if err == nil && len(out) == 0 {
			return fmt.Errorf("model %q in workspace %q has no versions: %w", name, ws, hub.ErrNotFound)
		}
		return err
	})
	return out, err
}

// GetModelVersion implements hub.ModelStore.
func (s *Store) GetModelVersion(ctx context.Context, ws, name string, ref hub.VersionRef) (hub.ModelVersion, error) {
	var mv hub.ModelVersion
	err := s.read(ctx, func(tx *sql.Tx) error {
		id, _, err := resolveVersion(ctx, tx, ws, name, ref)
		if err != nil {
			return err
		}
		vs, err := loadVersions(ctx, tx, ws, "v.id = ?", id)
		if err != nil {
			return err
		}
		mv = vs[0]
		return nil
	})
	return mv, err
}

// SetModelAlias implements hub.ModelStore.
func (s *Store) SetModelAlias(ctx context.Context, ws, name, alias string, version int) (hub.ModelVersion, error) {
	if err := hub.CheckAlias(alias); err != nil {
		return hub.ModelVersion{}, err
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if id, _, err = resolveVersion(ctx, tx, ws, name, hub.VersionRef{Version: version}); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO model_aliases (model_id, alias, version_id)
			VALUES ((SELECT model_id FROM model_versions WHERE id = ?), ?, ?)
			ON CONFLICT (model_id, alias) DO UPDATE SET version_id = excluded.version_id`, id, alias, id)
		return err
	})
	if err != nil {
		return hub.ModelVersion{}, fmt.Errorf("set alias %q of model %q: %w", alias, name, err)
	}
	return s.versionByID(ctx, ws, id)
}

// DeleteModelAlias implements hub.ModelStore.
func (s *Store) DeleteModelAlias(ctx context.Context, ws, name, alias string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, m, err := findModel(ctx, tx, ws, name)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM model_aliases WHERE model_id = ? AND alias = ?", m.id, alias)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("alias %q of model %q: %w", alias, name, hub.ErrNotFound)
		}
		return nil
	})
}

// SetModelVersionTags implements hub.ModelStore.
func (s *Store) SetModelVersionTags(ctx context.Context, ws, name string, ref hub.VersionRef, tags map[string]string) (hub.ModelVersion, error) {
	if err := checkKV("tag", tags); err != nil {
		return hub.ModelVersion{}, err
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if id, _, err = resolveVersion(ctx, tx, ws, name, ref); err != nil {
			return err
		}
		return setVersionTags(ctx, tx, id, tags)
	})
	if err != nil {
		return hub.ModelVersion{}, err
	}
	return s.versionByID(ctx, ws, id)
}

// DeleteModelVersion implements hub.ModelStore.
func (s *Store) DeleteModelVersion(ctx context.Context, ws, name string, version int, force bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		id, _, err := resolveVersion(ctx, tx, ws, name, hub.VersionRef{Version: version})
		if err != nil {
			return err
		}
		deps, err := versionDeployments(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			return fmt.Errorf("model %s:%d is deployed by %v; remove those deployments first: %w", name, version, deps, hub.ErrConflict)
		}
		var aliases []string
		rows, err := tx.QueryContext(ctx, "SELECT alias FROM model_aliases WHERE version_id = ? ORDER BY alias", id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return err
			}
			aliases = append(aliases, a)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(aliases) > 0 && !force {
			return fmt.Errorf("model %s:%d is the target of alias %v; move the alias, or delete with force to drop it: %w", name, version, aliases, hub.ErrConflict)
		}
		// Aliases and tags go with the version (ON DELETE CASCADE).
		_, err = tx.ExecContext(ctx, "DELETE FROM model_versions WHERE id = ?", id)
		return err
	})
}
