package hub

import (
	"context"
	"io"
)

// Store is the system of record of the hub: workspaces, experiments, runs
// and everything a run records. The API consumes it; hub/internal/sqlite
// implements it (a PostgreSQL implementation can be added beside it).
//
// Every method is safe for concurrent use. Every write is atomic: it is
// either committed durably before the method returns nil, or nothing of it
// is stored. Errors wrap ErrInvalid, ErrNotFound or ErrConflict so callers
// can classify them with errors.Is.
type Store interface {
	WorkspaceStore
	RunStore
	ModelStore
	AgentStore
	DeploymentStore
	TelemetryStore
	DriftStore
	EventStore
	DatasetStore
	// Close releases the store. No method may be called after Close.
	Close() error
}

// WorkspaceStore keeps workspaces and experiments.
type WorkspaceStore interface {
	CreateWorkspace(ctx context.Context, name, description string) (Workspace, error)
	ListWorkspaces(ctx context.Context) ([]Workspace, error)
	GetWorkspace(ctx context.Context, name string) (Workspace, error)
	// DeleteWorkspace deletes a workspace; one holding experiments or runs
	// is refused with ErrConflict unless force is set, which deletes all of
	// it.
	DeleteWorkspace(ctx context.Context, name string, force bool) error
	// CreateExperiment creates an experiment; ErrConflict if it exists.
	CreateExperiment(ctx context.Context, ws, name string) (Experiment, error)
	ListExperiments(ctx context.Context, ws string) ([]Experiment, error)
	GetExperiment(ctx context.Context, ws, name string) (Experiment, error)
}

// RunStore keeps runs and what they record.
type RunStore interface {
	// CreateRun creates a run, and its experiment if missing.
	CreateRun(ctx context.Context, ws string, rc RunCreate) (Run, error)
	GetRun(ctx context.Context, ws, id string) (Run, error)
	ListRuns(ctx context.Context, ws string, q RunQuery) ([]Run, error)
	// UpdateRun applies a status transition; ErrConflict if the status
	// machine forbids it.
	UpdateRun(ctx context.Context, ws, id string, u RunUpdate) (Run, error)
	// SetParams records params; a param already set to another value is an
	// *ParamConflictError (which wraps ErrConflict) and nothing is written.
	SetParams(ctx context.Context, ws, id string, params map[string]string) (Run, error)
	SetTags(ctx context.Context, ws, id string, tags map[string]string) (Run, error)
	DeleteTag(ctx context.Context, ws, id, key string) (Run, error)
	// AppendMetrics appends points (already validated, with Time set) and
	// keeps each metric's latest value up to date.
	AppendMetrics(ctx context.Context, ws, id string, points []MetricPoint) error
	// Metrics returns the series of a run ordered by name, step, time; all
	// metrics if name is empty.
	Metrics(ctx context.Context, ws, id, name string) ([]MetricPoint, error)
	// AppendLogs assigns each line the next sequence number of the run and
	// stores them; it returns the last sequence number assigned.
	AppendLogs(ctx context.Context, ws, id string, lines []LogLine) (int64, error)
	// Logs returns up to limit lines with Seq > after, in order, and the
	// run's status at the time of the read (so a follower knows when to
	// stop).
	Logs(ctx context.Context, ws, id string, after int64, limit int) ([]LogLine, RunStatus, error)
	// PutArtifact records (or replaces) the artifact at a.Path.
	PutArtifact(ctx context.Context, ws, id string, a Artifact) error
	GetArtifact(ctx context.Context, ws, id, path string) (Artifact, error)
	ListArtifacts(ctx context.Context, ws, id string) ([]Artifact, error)
	SetSnapshot(ctx context.Context, ws, id string, b Blob) error
}

// Blobs is a content-addressed store of bytes, keyed by lowercase hex
// sha256. Implementations are safe for concurrent use.
type Blobs interface {
	// Put streams r into the store and returns its address. More than max
	// bytes is an error wrapping ErrTooLarge and stores nothing. Putting
	// content that is already stored is cheap and returns the same Blob.
	Put(ctx context.Context, r io.Reader, max int64) (Blob, error)
	// Open returns the content of a blob; the caller closes it. ErrNotFound
	// if absent.
	Open(ctx context.Context, sha256 string) (io.ReadSeekCloser, Blob, error)
}

// RunQuery selects and orders runs of a workspace.
type RunQuery struct {
	Experiment string // only runs of this experiment, when set
	Filter     []Cond // all must hold
	OrderBy    *Order // default: created_at descending
	Top        int    // at most this many runs; 0 means no limit
}

// FieldKind says what a Field refers to.
type FieldKind string

// Field kinds of filters and orderings.
const (
	FieldMetric    FieldKind = "metrics"
	FieldParam     FieldKind = "params"
	FieldTag       FieldKind = "tags"
	FieldStatus    FieldKind = "status"
	FieldCreatedAt FieldKind = "created_at"
)

// Field is what a filter condition or an ordering refers to: a metric,
// param or tag by Name, or the run's status or creation time.
type Field struct {
	Kind FieldKind
	Name string // for metrics, params and tags
}

func (f Field) String() string {
	if f.Name == "" {
		return string(f.Kind)
	}
	return string(f.Kind) + "." + f.Name
}

// Cond is one comparison of a filter: Field Op Value. Value is a float64
// for metrics and a string otherwise.
type Cond struct {
	Field Field
	Op    string // one of = != < <= > >=
	Value any
}

// Order orders runs by a field.
type Order struct {
	Field Field
	Desc  bool
}

// ImportRun is a run with its metric series, for bulk loads.
type ImportRun struct {
	RunCreate
	Metrics []MetricPoint
}
