package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Datasets. A dataset is a named, versioned file of a workspace, stored in
// the blob store like artifacts and model files. Versions count up per name
// (1, 2, ...) and are immutable: a version is a content address (SHA256,
// Size) plus what the hub knows of the content (Format, Rows) and where it
// came from (Source).
//
// Two kinds of datasets exist. Uploaded ones (SourceUpload) are files a
// user sent (`atelier dataset upload`). Captured ones (SourceCapture) are
// written by the hub's capture exporter: every interval, the captured
// inputs of each deployment that are newer than the deployment's export
// cursor become the next version of dataset CaptureDatasetName(deployment)
// in the deployment's workspace, as JSON Lines of CaptureRecord. The version
// and the advanced cursor are committed in one transaction, so every
// captured row is exported exactly once. See docs/datasets.md.

// Dataset formats (Dataset.Format).
const (
	// FormatJSONL is JSON Lines: one JSON value per line; Rows counts the
	// non-empty lines.
	FormatJSONL = "jsonl"
	// FormatCSV is RFC 4180 CSV with a header row; every record has the
	// header's number of fields; Rows counts the records after the header.
	FormatCSV = "csv"
	// FormatBinary is any other file, stored as is; Rows is 0.
	FormatBinary = "binary"
)

// DatasetFormatList names the accepted formats, for messages.
const DatasetFormatList = FormatJSONL + ", " + FormatCSV + ", " + FormatBinary

// Dataset sources (DatasetSource.Kind).
const (
	SourceUpload  = "upload"
	SourceCapture = "capture"
)

// CapturePrefix starts the name of every captured dataset; uploads may not
// use it.
const CapturePrefix = "capture-"

// CaptureDatasetName is the dataset the captured inputs of deployment go
// to.
func CaptureDatasetName(deployment string) string { return CapturePrefix + deployment }

// DatasetSource says where a dataset version came from.
type DatasetSource struct {
	Kind string `json:"kind"` // SourceUpload or SourceCapture
	// Filename is the base name of the uploaded file (uploads), if given.
	Filename string `json:"filename,omitempty"`
	// Deployment, FirstID and LastID (captures): the version holds the
	// deployment's captured inputs with FirstID <= id <= LastID (ids of
	// GET .../deployments/{name}/captured); rows the hub had already
	// dropped (it keeps the newest 10,000 per deployment) are missing.
	Deployment string `json:"deployment,omitempty"`
	FirstID    int64  `json:"first_id,omitempty"`
	LastID     int64  `json:"last_id,omitempty"`
}

// String renders the source as one short phrase.
func (s DatasetSource) String() string {
	switch s.Kind {
	case SourceCapture:
		return fmt.Sprintf("capture of deployment %s, ids %d-%d", s.Deployment, s.FirstID, s.LastID)
	case SourceUpload:
		if s.Filename != "" {
			return "upload of " + s.Filename
		}
		return "upload"
	}
	return s.Kind
}

// Dataset is one version of a dataset.
type Dataset struct {
	Workspace   string        `json:"workspace"`
	Name        string        `json:"name"`
	Version     int           `json:"version"`
	SHA256      string        `json:"sha256"`
	Size        int64         `json:"size"`
	Rows        int64         `json:"rows"`
	Format      string        `json:"format"`
	Description string        `json:"description,omitempty"`
	Source      DatasetSource `json:"source"`
	CreatedAt   time.Time     `json:"created_at"`
}

// Ref returns "name:version", the form the CLI accepts.
func (d Dataset) Ref() string { return d.Name + ":" + strconv.Itoa(d.Version) }

// DatasetSummary is one dataset in a list: its latest version and how many
// versions it has.
type DatasetSummary struct {
	Workspace string  `json:"workspace"`
	Name      string  `json:"name"`
	Versions  int     `json:"versions"`
	Latest    Dataset `json:"latest"`
}

// DatasetCreate is what the store records for a new version: the stored
// blob and what is known of it. The store assigns Version and CreatedAt.
type DatasetCreate struct {
	Name        string
	Blob        Blob
	Rows        int64
	Format      string
	Description string
	Source      DatasetSource
}

// CaptureRecord is one line of a captured dataset (JSON Lines): one
// captured request, with what a training program needs beside the KServe v2
// request body.
type CaptureRecord struct {
	// ID orders the records (increasing within a dataset and across its
	// versions).
	ID int64 `json:"id"`
	// Time is the end of the telemetry interval the request was captured
	// in (the agent batches captures with its telemetry).
	Time         time.Time `json:"time"`
	Deployment   string    `json:"deployment"`
	Agent        string    `json:"agent"`
	ModelVersion int       `json:"model_version"`
	// Request is the KServe v2 (Open Inference Protocol) request body as
	// the agent received it: {"inputs": [{"name", "shape", "datatype",
	// "data"}, ...]}.
	Request json.RawMessage `json:"request"`
}

// CaptureExport is one deployment whose captured inputs are newer than its
// export cursor.
type CaptureExport struct {
	Deployment string
	Workspace  string
	// After is the cursor: every captured id <= After is exported.
	After int64
}

// DatasetStore keeps dataset versions and the capture export cursors. Safe
// for concurrent use.
type DatasetStore interface {
	// CreateDataset records the next version of dc.Name in ws. When cursor
	// is non-nil (captures), the export cursor of cursor.Deployment must be
	// cursor.After (ErrConflict otherwise: another exporter got there
	// first) and is moved to dc.Source.LastID in the same transaction.
	CreateDataset(ctx context.Context, ws string, dc DatasetCreate, cursor *CaptureExport) (Dataset, error)
	// ListDatasets returns the datasets of ws by name, each with its latest
	// version.
	ListDatasets(ctx context.Context, ws string) ([]DatasetSummary, error)
	// DatasetVersions returns the versions of dataset name, newest first;
	// ErrNotFound if it has none.
	DatasetVersions(ctx context.Context, ws, name string) ([]Dataset, error)
	// GetDataset returns version of dataset name (the latest for 0);
	// ErrNotFound names what is missing.
	GetDataset(ctx context.Context, ws, name string, version int) (Dataset, error)
	// PendingCaptures returns the deployments that have captured inputs
	// with an id above their export cursor (0 before the first export).
	PendingCaptures(ctx context.Context) ([]CaptureExport, error)
}

// CheckDatasetName validates the name of a dataset: a name as NameRule
// says, or CapturePrefix followed by one (a deployment's captured inputs).
// The error wraps ErrInvalid.
func CheckDatasetName(name string) error {
	if dep, ok := strings.CutPrefix(name, CapturePrefix); ok && nameRE.MatchString(dep) {
		return nil
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("dataset name %q: must be %s: %w", name, NameRule, ErrInvalid)
	}
	return nil
}

// CheckDatasetFormat validates a dataset format.
func CheckDatasetFormat(format string) error {
	switch format {
	case FormatJSONL, FormatCSV, FormatBinary:
		return nil
	}
	return fmt.Errorf("dataset format %q: expected one of %s: %w", format, DatasetFormatList, ErrInvalid)
}

// ParseDatasetRef parses NAME or NAME:VERSION (VERSION a positive number or
// "latest"); version 0 means the latest.
func ParseDatasetRef(s string) (string, int, error) {
	name, v, hasVersion := strings.Cut(s, ":")
	if err := CheckDatasetName(name); err != nil {
		return "", 0, err
	}
	if !hasVersion || v == Latest {
		return name, 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("dataset %q: version %q: expected a positive whole number or %q: %w", s, v, Latest, ErrInvalid)
	}
	return name, n, nil
}
