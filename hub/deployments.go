package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Deployments. A deployment is made in a workspace and puts one model
// version of that workspace on a set of agents: the agents named by id
// (Agents) or every agent whose labels match a selector (Selector), now
// and later (an agent enrolling later with matching labels is reached
// too). Deployment names are unique across the whole hub, not only per
// workspace: an agent serves every deployment it runs on one scoring
// endpoint, at /v2/models/{deployment name}, whatever workspace the
// deployment belongs to.

// Deployment target states, per agent (DeploymentTarget.State).
const (
	TargetPending     = "pending" // the agent has not reported the deployment yet
	TargetDownloading = "downloading"
	TargetLoading     = "loading"
	TargetServing     = "serving"
	TargetFailed      = "failed"
	// TargetRolledBack: a guard rule held during the new version's
	// probation and the agent switched back to the version before
	// (ModelVersion); RolledBackVersion is the version it left and Error
	// the reason. The agent does not retry that version until the
	// deployment names another one.
	TargetRolledBack = "rolled_back"
)

// Runtime option limits.
const (
	MaxDeploymentBatch = 1024
	MaxDeploymentDelay = 10 * time.Second
)

// RuntimeOptions tune how agents serve a deployment. Zero values leave the
// agent's defaults.
type RuntimeOptions struct {
	// MaxBatch is the most requests merged into one inference run.
	MaxBatch int `json:"max_batch,omitempty"`
	// MaxDelay is how long a request may wait for others to batch with, as
	// a Go duration ("2ms"); at most MaxDeploymentDelay.
	MaxDelay string `json:"max_delay,omitempty"`
	// AllowCPUFallback lets FPGA agents score on the CPU while their card
	// stays down (otherwise those requests fail with a clear error).
	AllowCPUFallback bool `json:"allow_cpu_fallback,omitempty"`
}

// Check validates the options; the error wraps ErrInvalid.
func (o RuntimeOptions) Check() error {
	if o.MaxBatch < 0 || o.MaxBatch > MaxDeploymentBatch {
		return fmt.Errorf("max_batch %d: must be from 0 to %d: %w", o.MaxBatch, MaxDeploymentBatch, ErrInvalid)
	}
	_, err := o.Delay()
	return err
}

// Delay parses MaxDelay (0 when empty). The error wraps ErrInvalid.
func (o RuntimeOptions) Delay() (time.Duration, error) {
	if o.MaxDelay == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(o.MaxDelay)
	if err != nil || d < 0 || d > MaxDeploymentDelay {
		return 0, fmt.Errorf("max_delay %q: expected a duration from 0 to %s, such as 2ms: %w", o.MaxDelay, MaxDeploymentDelay, ErrInvalid)
	}
	return d, nil
}

// Deployment is a deployment as stored, with, when shown by the API, the
// state of each agent it targets.
type Deployment struct {
	Workspace string `json:"workspace"`
	Name      string `json:"name"`
	// Model and Version name the deployed version. Alias is the alias it
	// was resolved from when created or updated with NAME@ALIAS (the
	// deployment keeps that version when the alias later moves; update it
	// to follow).
	Model   string `json:"model"`
	Version int    `json:"version"`
	Alias   string `json:"alias,omitempty"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	// Agents are the targeted agent ids, or Selector the labels an agent
	// must all carry (exactly one of the two is set).
	Agents   []string          `json:"agents,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Options  RuntimeOptions    `json:"options"`
	// Guard are the rollback rules of the current version, if any.
	Guard *GuardRules `json:"guard,omitempty"`
	// Drifting is set while the deployment's inputs drift from its
	// baseline beyond the threshold (see DriftStore).
	Drifting  bool      `json:"drifting"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Targets is the state of every agent the deployment reaches, by
	// agent id; filled in by the API's show and list answers.
	Targets []DeploymentTarget `json:"targets"`
}

// ModelRef returns "model:version".
func (d Deployment) ModelRef() string { return fmt.Sprintf("%s:%d", d.Model, d.Version) }

// Reaches reports whether the deployment targets the agent with this id
// and these labels: by id, or by a selector all of whose labels the agent
// carries with the same values. (Callers leave revoked agents out.)
func (d Deployment) Reaches(id string, labels map[string]string) bool {
	if len(d.Agents) > 0 {
		return slices.Contains(d.Agents, id)
	}
	if len(d.Selector) == 0 {
		return false
	}
	for k, v := range d.Selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// DeploymentTarget is the state of a deployment on one agent, from that
// agent's latest ReportedState.
type DeploymentTarget struct {
	Agent string `json:"agent"`
	// State is one of pending, downloading, loading, serving, failed,
	// rolled_back.
	State string `json:"state"`
	// ModelVersion is the version the agent reports (serving, or being
	// brought up); 0 while pending.
	ModelVersion int    `json:"model_version"`
	Error        string `json:"error,omitempty"`
	// RolledBackVersion is the version rolled back, with State rolled_back.
	RolledBackVersion int `json:"rolled_back_version,omitempty"`
	// Endpoint is the agent's scoring endpoint URL for this deployment
	// ({agent endpoint}/v2/models/{name}); empty until the agent reports
	// an endpoint.
	Endpoint string `json:"endpoint,omitempty"`
}

// DeploymentCreate is the body of POST .../deployments. Model is
// NAME:VERSION, NAME@ALIAS, or NAME (the latest version), resolved once to
// a version.
type DeploymentCreate struct {
	Name     string            `json:"name"`
	Model    string            `json:"model"`
	Agents   []string          `json:"agents,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Options  RuntimeOptions    `json:"options"`
	// Guard are rollback rules the agents apply to this version (none when
	// nil).
	Guard *GuardRules `json:"guard,omitempty"`
}

// DeploymentUpdate is the body of PATCH .../deployments/{name}: each field
// set replaces the stored one (Agents or Selector replaces the targeting
// as a whole; Guard {} removes the rules).
type DeploymentUpdate struct {
	Model    string            `json:"model,omitempty"`
	Agents   []string          `json:"agents,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Options  *RuntimeOptions   `json:"options,omitempty"`
	Guard    *GuardRules       `json:"guard,omitempty"`
}

// DeploymentSpec is what the store records: the model resolved by the
// store in the same transaction (Model, Ref), the targeting and options.
type DeploymentSpec struct {
	Name  string
	Model string
	Ref   VersionRef
	// Alias, when Ref is a version, is the alias it was resolved from
	// earlier (kept by updates that do not change the model).
	Alias    string
	Agents   []string
	Selector map[string]string
	Options  RuntimeOptions
	// Guard is nil for no rules; otherwise checked, Probation filled in.
	Guard *GuardRules
}

// CheckTargeting validates agents and selector: exactly one is set, agent
// ids are distinct, selector keys and values follow the label rules.
func CheckTargeting(agents []string, selector map[string]string) error {
	switch {
	case len(agents) == 0 && len(selector) == 0:
		return fmt.Errorf("deployment targets: expected agent ids or a label selector: %w", ErrInvalid)
	case len(agents) > 0 && len(selector) > 0:
		return fmt.Errorf("deployment targets: agent ids and a label selector are exclusive; give one: %w", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, id := range agents {
		if id == "" || len(id) > 63 {
			return fmt.Errorf("deployment target agent %q: expected an agent id: %w", id, ErrInvalid)
		}
		if seen[id] {
			return fmt.Errorf("deployment target agent %q listed twice: %w", id, ErrInvalid)
		}
		seen[id] = true
	}
	for k, v := range selector {
		if err := CheckKey("selector label", k); err != nil {
			return err
		}
		if len(v) > 256 {
			return fmt.Errorf("selector label %q: value of %d bytes exceeds the limit of 256: %w", k, len(v), ErrInvalid)
		}
	}
	return nil
}

// Spec validates dc and returns what the store records.
func (dc DeploymentCreate) Spec() (DeploymentSpec, error) {
	if err := CheckName("deployment", dc.Name); err != nil {
		return DeploymentSpec{}, err
	}
	model, ref, err := ParseModelRef(dc.Model)
	if err != nil {
		return DeploymentSpec{}, fmt.Errorf("deployment %q: %w", dc.Name, err)
	}
	if err := CheckTargeting(dc.Agents, dc.Selector); err != nil {
		return DeploymentSpec{}, fmt.Errorf("deployment %q: %w", dc.Name, err)
	}
	if err := dc.Options.Check(); err != nil {
		return DeploymentSpec{}, fmt.Errorf("deployment %q: %w", dc.Name, err)
	}
	g, err := normalizeGuard(dc.Guard)
	if err != nil {
		return DeploymentSpec{}, fmt.Errorf("deployment %q: %w", dc.Name, err)
	}
	return DeploymentSpec{Name: dc.Name, Model: model, Ref: ref, Agents: slices.Clone(dc.Agents),
		Selector: maps.Clone(dc.Selector), Options: dc.Options, Guard: g}, nil
}

// Apply validates du and applies it to the spec of the stored deployment
// d, returning the new spec. An empty update is ErrInvalid.
func (du DeploymentUpdate) Apply(d Deployment) (DeploymentSpec, error) {
	if du.Model == "" && len(du.Agents) == 0 && len(du.Selector) == 0 && du.Options == nil && du.Guard == nil {
		return DeploymentSpec{}, fmt.Errorf("update deployment %q: nothing to change: expected model, agents, selector, options or guard: %w", d.Name, ErrInvalid)
	}
	// Without a model the deployed version stays (an alias is not
	// resolved again) and so does the alias it came from.
	dc := DeploymentCreate{Name: d.Name, Model: d.ModelRef(), Agents: d.Agents, Selector: d.Selector, Options: d.Options, Guard: d.Guard}
	if du.Model != "" {
		dc.Model = du.Model
	}
	if len(du.Agents) > 0 || len(du.Selector) > 0 {
		dc.Agents, dc.Selector = du.Agents, du.Selector
	}
	if du.Options != nil {
		dc.Options = *du.Options
	}
	if du.Guard != nil {
		dc.Guard = du.Guard
	}
	spec, err := dc.Spec()
	if err == nil && du.Model == "" {
		spec.Alias = d.Alias
	}
	return spec, err
}

// DesiredRecord is what the store keeps of an agent's desired state: its
// generation (increasing on every change, across hub restarts) and a
// digest of its content, to tell whether a recomputed state changed.
type DesiredRecord struct {
	Generation uint64
	Digest     string
}

// DeploymentStore keeps deployments, and the generation of each agent's
// desired state.
type DeploymentStore interface {
	// CreateDeployment resolves spec's model ref in ws and records the
	// deployment. ErrConflict if the name is used in any workspace;
	// ErrNotFound names the workspace, model, version or alias missing.
	CreateDeployment(ctx context.Context, ws string, spec DeploymentSpec) (Deployment, error)
	// UpdateDeployment replaces a deployment's model (resolved again),
	// targeting and options.
	UpdateDeployment(ctx context.Context, ws string, spec DeploymentSpec) (Deployment, error)
	GetDeployment(ctx context.Context, ws, name string) (Deployment, error)
	// ListDeployments lists the deployments of ws by name; of every
	// workspace (by workspace, then name) when ws is "".
	ListDeployments(ctx context.Context, ws string) ([]Deployment, error)
	DeleteDeployment(ctx context.Context, ws, name string) error
	// DesiredRecords returns the record of every agent that has one.
	DesiredRecords(ctx context.Context) (map[string]DesiredRecord, error)
	// AdvanceDesired records the digest of each agent's newly computed
	// desired state (agent id → digest) in one transaction, all or
	// nothing, and returns each agent's record as stored: an agent whose
	// stored digest is the same keeps its generation, any other gets the
	// stored generation + 1 (1 without a record). The store assigns the
	// generations inside that transaction, so concurrent callers never
	// conflict and each agent's generations strictly increase. An empty
	// agent id or digest is ErrInvalid.
	AdvanceDesired(ctx context.Context, digests map[string]string) (map[string]DesiredRecord, error)
}
