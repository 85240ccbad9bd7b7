package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/atelier-ml/atelier/hub"
)

// migDatasets creates the dataset tables.
//
// datasets has one row per (workspace, name), holding the version counter
// (versions are never reused); dataset_versions one row per version, with
// the content address of its blob and its source (kind, upload file name,
// or the deployment and captured-id range of a capture export).
// capture_cursors keeps, per deployment name, the highest captured id
// already exported; it moves in the transaction that records the version
// holding the rows up to it.
const migDatasets = `
CREATE TABLE datasets (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	last_version INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	UNIQUE (workspace_id, name)
);
CREATE TABLE dataset_versions (
	dataset_id  INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
	version     INTEGER NOT NULL,
	sha256      TEXT NOT NULL,
	size        INTEGER NOT NULL,
	rows        INTEGER NOT NULL,
	format      TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	source_kind TEXT NOT NULL,
	filename    TEXT NOT NULL DEFAULT '',
	deployment  TEXT NOT NULL DEFAULT '',
	first_id    INTEGER NOT NULL DEFAULT 0,
	last_id     INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (dataset_id, version)
) WITHOUT ROWID;
CREATE INDEX dataset_versions_sha256 ON dataset_versions (sha256);
CREATE TABLE capture_cursors (
	deployment TEXT PRIMARY KEY,
	last_id    INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
`

var _ hub.DatasetStore = (*Store)(nil)

func checkDatasetCreate(dc *hub.DatasetCreate, cursor *hub.CaptureExport) error {
	if err := hub.CheckDatasetName(dc.Name); err != nil {
		return err
	}
	if err := hub.CheckDatasetFormat(dc.Format); err != nil {
		return err
	}
	if len(dc.Blob.SHA256) != 64 || dc.Blob.Size < 0 || dc.Rows < 0 {
		return fmt.Errorf("dataset %q: blob %q of %d bytes, %d rows: expected a sha256 hex digest and counts >= 0: %w",
			dc.Name, dc.Blob.SHA256, dc.Blob.Size, dc.Rows, hub.ErrInvalid)
	}
	if len(dc.Description) > hub.MaxValueLen || len(dc.Source.Filename) > hub.MaxValueLen {
		return fmt.Errorf("dataset %q: description or file name longer than %d bytes: %w", dc.Name, hub.MaxValueLen, hub.ErrInvalid)
	}
	switch dc.Source.Kind {
	case hub.SourceUpload:
		if cursor != nil {
			return fmt.Errorf("dataset %q: an upload moves no capture cursor: %w", dc.Name, hub.ErrInvalid)
		}
	case hub.SourceCapture:
		s := dc.Source
		if cursor == nil || cursor.Deployment != s.Deployment || s.FirstID <= cursor.After || s.LastID < s.FirstID ||
			dc.Name != hub.CaptureDatasetName(s.Deployment) {
			return fmt.Errorf("dataset %q: capture of deployment %q ids %d-%d: expected dataset %q, ids above the cursor and first <= last: %w",
				dc.Name, s.Deployment, s.FirstID, s.LastID, hub.CaptureDatasetName(s.Deployment), hub.ErrInvalid)
		}
	default:
		return fmt.Errorf("dataset %q: source kind %q: expected %q or %q: %w", dc.Name, dc.Source.Kind, hub.SourceUpload, hub.SourceCapture, hub.ErrInvalid)
	}
	return nil
}

// CreateDataset implements hub.DatasetStore. The version number comes from
// a per-dataset counter incremented in the same write transaction, which
// also checks and moves the capture cursor.
func (s *Store) CreateDataset(ctx context.Context, ws string, dc hub.DatasetCreate, cursor *hub.CaptureExport) (hub.Dataset, error) {
	if err := checkDatasetCreate(&dc, cursor); err != nil {
		return hub.Dataset{}, err
	}
	var version int
	err := s.write(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		now := nanos(s.now())
		if cursor != nil {
			var at int64
			err := tx.QueryRowContext(ctx, "SELECT last_id FROM capture_cursors WHERE deployment = ?", cursor.Deployment).Scan(&at)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if at != cursor.After {
				return fmt.Errorf("capture cursor of deployment %q is at %d, expected %d (exported concurrently): %w",
					cursor.Deployment, at, cursor.After, hub.ErrConflict)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO capture_cursors (deployment, last_id, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (deployment) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at`,
				cursor.Deployment, dc.Source.LastID, now); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO datasets (workspace_id, name, last_version, created_at) VALUES (?, ?, 0, ?)
			ON CONFLICT (workspace_id, name) DO NOTHING`, wsID, dc.Name, now); err != nil {
			return err
		}
		var datasetID int64
		if err := tx.QueryRowContext(ctx, `UPDATE datasets SET last_version = last_version + 1
			WHERE workspace_id = ? AND name = ? RETURNING id, last_version`, wsID, dc.Name).Scan(&datasetID, &version); err != nil {
			return err
		}
		src := dc.Source
		_, err = tx.ExecContext(ctx, `INSERT INTO dataset_versions (dataset_id, version, sha256, size, rows, format, description,
			source_kind, filename, deployment, first_id, last_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			datasetID, version, dc.Blob.SHA256, dc.Blob.Size, dc.Rows, dc.Format, dc.Description,
			src.Kind, src.Filename, src.Deployment, src.FirstID, src.LastID, now)
		return err
	})
	if err != nil {
		return hub.Dataset{}, fmt.Errorf("create dataset %q in workspace %q: %w", dc.Name, ws, err)
	}
	return s.GetDataset(ctx, ws, dc.Name, version)
}

const datasetColumns = `d.name, v.version, v.sha256, v.size, v.rows, v.format, v.description,
	v.source_kind, v.filename, v.deployment, v.first_id, v.last_id, v.created_at`

func scanDataset(ws string, sc interface{ Scan(...any) error }) (hub.Dataset, error) {
	d := hub.Dataset{Workspace: ws}
	var at int64
	err := sc.Scan(&d.Name, &d.Version, &d.SHA256, &d.Size, &d.Rows, &d.Format, &d.Description,
		&d.Source.Kind, &d.Source.Filename, &d.Source.Deployment, &d.Source.FirstID, &d.Source.LastID, &at)
	d.CreatedAt = fromNanos(at)
	return d, err
}

// ListDatasets implements hub.DatasetStore.
func (s *Store) ListDatasets(ctx context.Context, ws string) ([]hub.DatasetSummary, error) {
	out := []hub.DatasetSummary{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+datasetColumns+`,
			(SELECT COUNT(*) FROM dataset_versions c WHERE c.dataset_id = d.id)
			FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id AND v.version = d.last_version
			WHERE d.workspace_id = ? ORDER BY d.name`, wsID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n int
			d, err := scanDataset(ws, scanFunc(func(dst ...any) error { return rows.Scan(append(dst, &n)...) }))
			if err != nil {
				return err
			}
			out = append(out, hub.DatasetSummary{Workspace: ws, Name: d.Name, Versions: n, Latest: d})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list datasets of workspace %q: %w", ws, err)
	}
	return out, nil
}

// scanFunc adapts a function to scanDataset's scanner.
type scanFunc func(dst ...any) error

func (f scanFunc) Scan(dst ...any) error { return f(dst...) }

// DatasetVersions implements hub.DatasetStore.
func (s *Store) DatasetVersions(ctx context.Context, ws, name string) ([]hub.Dataset, error) {
	var out []hub.Dataset
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+datasetColumns+` FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id
			WHERE d.workspace_id = ? AND d.name = ? ORDER BY v.version DESC`, wsID, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDataset(ws, rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return fmt.Errorf("dataset %q in workspace %q: %w", name, ws, hub.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("versions of dataset %q: %w", name, err)
	}
	return out, nil
}

// GetDataset implements hub.DatasetStore.
func (s *Store) GetDataset(ctx context.Context, ws, name string, version int) (hub.Dataset, error) {
	var d hub.Dataset
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		var last int
		err = tx.QueryRowContext(ctx, "SELECT last_version FROM datasets WHERE workspace_id = ? AND name = ?", wsID, name).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("dataset %q in workspace %q: %w", name, ws, hub.ErrNotFound)
		}
		if err != nil {
			return err
		}
		v := version
		if v == 0 {
			v = last
		}
		d, err = scanDataset(ws, tx.QueryRowContext(ctx, `SELECT `+datasetColumns+` FROM datasets d
			JOIN dataset_versions v ON v.dataset_id = d.id WHERE d.workspace_id = ? AND d.name = ? AND v.version = ?`, wsID, name, v))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("version %d of dataset %q in workspace %q (the latest is %d): %w", v, name, ws, last, hub.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return hub.Dataset{}, err
	}
	return d, nil
}

// PendingCaptures implements hub.DatasetStore. Captured inputs of a name
// that is no deployment (any more) are not exported: without a deployment
// there is no workspace to put them in.
func (s *Store) PendingCaptures(ctx context.Context) ([]hub.CaptureExport, error) {
	var out []hub.CaptureExport
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT d.name, w.name, COALESCE(c.last_id, 0) FROM deployments d
			JOIN workspaces w ON w.id = d.workspace_id
			LEFT JOIN capture_cursors c ON c.deployment = d.name
			WHERE EXISTS (SELECT 1 FROM drift_captured x WHERE x.deployment = d.name AND x.id > COALESCE(c.last_id, 0))
			ORDER BY d.name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e hub.CaptureExport
			if err := rows.Scan(&e.Deployment, &e.Workspace, &e.After); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("pending capture exports: %w", err)
	}
	return out, nil
}
