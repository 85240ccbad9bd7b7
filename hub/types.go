package hub

import "time"

// Workspace is the top-level container; every other resource lives in one.
type Workspace struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	Experiments int       `json:"experiments"`
	Runs        int       `json:"runs"`
}

// Experiment groups the runs of one training task in a workspace. It is
// created on first use by a run, or explicitly.
type Experiment struct {
	Workspace string    `json:"workspace"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Runs      int       `json:"runs"`
}

// RunStatus is the lifecycle state of a run.
type RunStatus string

// Run statuses. A run moves queued → running → one of the final statuses;
// a queued run may also go straight to a final status.
const (
	StatusQueued    RunStatus = "queued"
	StatusRunning   RunStatus = "running"
	StatusCompleted RunStatus = "completed"
	StatusFailed    RunStatus = "failed"
	StatusCanceled  RunStatus = "canceled"
)

// Final reports whether s is a terminal status.
func (s RunStatus) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCanceled
}

// Run is one execution of a training program with everything it recorded.
// Params are write-once, tags mutable, metrics append-only.
type Run struct {
	ID         string     `json:"id"`
	Workspace  string     `json:"workspace"`
	Experiment string     `json:"experiment"`
	Name       string     `json:"name,omitempty"`
	ParentID   string     `json:"parent_id,omitempty"`
	Status     RunStatus  `json:"status"`
	Command    []string   `json:"command,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`

	Params map[string]string `json:"params"`
	Tags   map[string]string `json:"tags"`
	// Metrics maps each metric name to its latest value: the point with
	// the highest step, and among equal steps the latest timestamp.
	Metrics   map[string]float64 `json:"metrics"`
	Artifacts []Artifact         `json:"artifacts"`
	Snapshot  *Blob              `json:"snapshot,omitempty"`
}

// RunCreate is the body of POST /runs. Experiment is created if missing.
type RunCreate struct {
	Experiment string            `json:"experiment"`
	Name       string            `json:"name,omitempty"`
	ParentID   string            `json:"parent_id,omitempty"`
	Status     RunStatus         `json:"status,omitempty"` // default queued
	Command    []string          `json:"command,omitempty"`
	Params     map[string]string `json:"params,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
}

// RunUpdate is the body of PATCH /runs/{run}: a status transition.
type RunUpdate struct {
	Status   RunStatus `json:"status"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// MetricPoint is one value of a metric series. Step defaults to 0 and
// Time to the moment the hub received it.
type MetricPoint struct {
	Name  string    `json:"name"`
	Value float64   `json:"value"`
	Step  int64     `json:"step"`
	Time  time.Time `json:"timestamp"`
}

// Log streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// LogLine is one line a run printed. Seq is assigned by the hub, starting
// at 1 and increasing without gaps per run.
type LogLine struct {
	Seq    int64     `json:"seq,omitempty"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
	Text   string    `json:"text"`
}

// Artifact is an output file of a run, stored content-addressed.
type Artifact struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Blob identifies stored content.
type Blob struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}
