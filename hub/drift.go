package hub

import (
	"context"
	"encoding/json"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Drift. Agents summarize every input feature of a deployment (an element
// of an input tensor, row-major, batch dimension excluded) per telemetry
// batch: count, mean, sum of squared deviations, min, max, NaN count and a
// quantile sketch (internal/sketch). The hub merges them per minute and
// compares a window of them with the deployment's baseline, feature by
// feature (population stability index and KS distance, see
// hub/internal/drift and docs/drift.md).
//
// Baseline. Per (deployment, model version), fixed once made: from the
// training run's inputs when the version was registered from a run that
// saved a baseline artifact (BaselineArtifact), otherwise from the first
// BaselineWindow of telemetry after the version first reported features.

// BaselineArtifact is the run artifact a trainer saves its training inputs
// in, beside the model file's artifact or at the top of the run's
// artifacts (the sample trainer writes outputs/baseline.csv): CSV with a header row naming each column INPUT[INDEX] (the feature's
// input tensor name and element index) or INPUT (index 0); one row per
// training sample. Columns with other headers (such as a label) are
// ignored.
const BaselineArtifact = "baseline.csv"

// Baseline sources (DriftBaseline.Source starts with one of them).
const (
	BaselineFromRun       = "run"
	BaselineFromTelemetry = "telemetry"
)

// FeatureStats is one input feature summarized over a time range.
type FeatureStats struct {
	Input string `json:"input"`
	Index int    `json:"index"`
	// Count excludes NaN values, counted in NaNCount.
	Count    uint64  `json:"count"`
	Mean     float64 `json:"mean"`
	Std      float64 `json:"std"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	NaNCount uint64  `json:"nan_count"`
	// Sketch is the merged quantile sketch (internal/sketch's wire form).
	Sketch *agentv1.Sketch `json:"-"`
}

// DriftBaseline is what a deployment's model version is compared with.
type DriftBaseline struct {
	Deployment string `json:"deployment"`
	Version    int    `json:"version"`
	// Source is "run WS/RUN_ID baseline.csv" or "telemetry".
	Source string `json:"source"`
	// Since and Until bound the telemetry a telemetry baseline was made
	// of (zero for a run's).
	Since     time.Time      `json:"since,omitzero"`
	Until     time.Time      `json:"until,omitzero"`
	CreatedAt time.Time      `json:"created_at"`
	Features  []FeatureStats `json:"features"`
}

// FeatureDrift compares one feature's window with its baseline. PSI and KS
// are absent when either side has no values.
type FeatureDrift struct {
	Input         string   `json:"input"`
	Index         int      `json:"index"`
	PSI           *float64 `json:"psi,omitempty"`
	KS            *float64 `json:"ks,omitempty"`
	BaselineCount uint64   `json:"baseline_count"`
	Count         uint64   `json:"count"`
	BaselineMean  float64  `json:"baseline_mean"`
	Mean          float64  `json:"mean"`
	NaNCount      uint64   `json:"nan_count"`
	// Judged is false while either side has fewer than MinCount values.
	Judged   bool `json:"judged"`
	Drifting bool `json:"drifting"`
}

// Drift statuses (DriftReport.Status).
const (
	DriftOK              = "ok"
	DriftDrifting        = "drifting"
	DriftPendingBaseline = "pending_baseline" // the telemetry baseline window is not over
	DriftNoData          = "no_data"          // no judged feature in the window
)

// DriftReport is the answer of GET .../deployments/{name}/drift.
type DriftReport struct {
	Deployment string `json:"deployment"`
	Model      string `json:"model"`
	Version    int    `json:"version"`
	// Source and bounds of the baseline (Source empty while pending).
	BaselineSource string    `json:"baseline_source"`
	BaselineSince  time.Time `json:"baseline_since,omitzero"`
	BaselineUntil  time.Time `json:"baseline_until,omitzero"`
	// The window compared: [Since, Until).
	Since     time.Time      `json:"since"`
	Until     time.Time      `json:"until"`
	Threshold float64        `json:"threshold"`
	MinCount  uint64         `json:"min_count"`
	Status    string         `json:"status"`
	Drifting  bool           `json:"drifting"`
	Features  []FeatureDrift `json:"features"`
}

// CapturedInput is one captured request's inputs: a KServe v2 JSON
// request body, as the agent uploaded it.
type CapturedInput struct {
	ID         int64           `json:"id"`
	Time       time.Time       `json:"time"`
	Deployment string          `json:"deployment"`
	Agent      string          `json:"agent"`
	Version    int             `json:"version"`
	Body       json.RawMessage `json:"body"`
}

// DriftStore keeps input feature summaries, drift baselines, the drifting
// flag of deployments and captured inputs. Feature summaries and captured
// inputs are written by IngestTelemetry. Safe for concurrent use.
type DriftStore interface {
	// FeatureWindow merges the feature summaries of deployment name and
	// model version in the minutes starting in [since, until), one entry
	// per (input, index) ordered by input then index; none if there are
	// none.
	FeatureWindow(ctx context.Context, name string, version int, since, until time.Time) ([]FeatureStats, error)
	// FirstFeatureTime is the start of the first minute with feature
	// summaries of (name, version); the zero time if there is none.
	FirstFeatureTime(ctx context.Context, name string, version int) (time.Time, error)
	// DriftBaseline returns the baseline of (name, version); ErrNotFound
	// if none was made.
	DriftBaseline(ctx context.Context, name string, version int) (DriftBaseline, error)
	// SetDriftBaseline stores b unless (b.Deployment, b.Version) already
	// has one; either way it returns the stored baseline (the first one
	// stored wins).
	SetDriftBaseline(ctx context.Context, b DriftBaseline) (DriftBaseline, error)
	// SetDrifting records whether deployment name drifts and returns what
	// was recorded before (false if nothing was).
	SetDrifting(ctx context.Context, name string, drifting bool) (bool, error)
	// DriftingDeployments returns the names of the deployments recorded
	// as drifting.
	DriftingDeployments(ctx context.Context) (map[string]bool, error)
	// CapturedInputs returns up to limit (at most 10,000) captured inputs
	// of deployment name with ID > after, in ID order.
	CapturedInputs(ctx context.Context, name string, after int64, limit int) ([]CapturedInput, error)
	// PruneDrift deletes feature summaries of minutes before before and
	// returns how many rows it deleted. Baselines are kept.
	PruneDrift(ctx context.Context, before time.Time) (int64, error)
}
