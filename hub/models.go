package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ModelVersion is one registered version of a model: an ONNX file stored
// content-addressed (SHA256, Size), what its graph declares (IR version,
// opset, producer, inputs and outputs), mutable tags, the aliases pointing
// at it, and its lineage to the run that produced it when it was registered
// from a run's artifact.
type ModelVersion struct {
	Workspace   string            `json:"workspace"`
	Name        string            `json:"name"`
	Version     int               `json:"version"`
	SHA256      string            `json:"sha256"`
	Size        int64             `json:"size"`
	Description string            `json:"description,omitempty"`
	IRVersion   int64             `json:"ir_version"`
	Opset       int64             `json:"opset"`
	Producer    string            `json:"producer"` // producer_name, then " " and producer_version if set
	Inputs      []TensorSpec      `json:"inputs"`
	Outputs     []TensorSpec      `json:"outputs"`
	Tags        map[string]string `json:"tags"`
	Aliases     []string          `json:"aliases"`
	RunID       string            `json:"run_id,omitempty"`
	Experiment  string            `json:"experiment,omitempty"`
	// ArtifactPath is the run artifact the version was registered from.
	ArtifactPath string    `json:"artifact_path,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// Ref returns "name:version", the form the CLI accepts.
func (m ModelVersion) Ref() string { return m.Name + ":" + strconv.Itoa(m.Version) }

// TensorSpec is one input or output of a model. Datatype uses the names of
// the Open Inference Protocol v2 (FP32, INT64, BYTES for strings, ...);
// values that are not plain tensors (sequences, maps, optionals) have
// Datatype "NON_TENSOR". Shape is nil when the model declares no shape (any
// rank).
type TensorSpec struct {
	Name     string `json:"name"`
	Datatype string `json:"datatype"`
	Shape    []Dim  `json:"shape"`
}

// Dim is one dimension of a TensorSpec's shape. In JSON a fixed dimension
// is its size (a number); a dynamic one is its symbolic name (a string such
// as "batch") when the model gives one, and -1 otherwise.
type Dim struct {
	Value int64  // size, or -1 when dynamic
	Param string // symbolic name of a dynamic dimension, or ""
}

// MarshalJSON writes the size, or the symbolic name of a named dynamic
// dimension.
func (d Dim) MarshalJSON() ([]byte, error) {
	if d.Param != "" {
		return json.Marshal(d.Param)
	}
	return []byte(strconv.FormatInt(d.Value, 10)), nil
}

// UnmarshalJSON reads a number or a string (a named dynamic dimension).
func (d *Dim) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		d.Value = -1
		return json.Unmarshal(b, &d.Param)
	}
	d.Param = ""
	return json.Unmarshal(b, &d.Value)
}

// String returns the size, the symbolic name, or "?" for an unnamed
// dynamic dimension.
func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Value < 0:
		return "?"
	}
	return strconv.FormatInt(d.Value, 10)
}

// ShapeString renders a shape as "[batch,4]", or "[...]" when unknown.
func ShapeString(s []Dim) string {
	if s == nil {
		return "[...]"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Model summarizes a registered model: its latest version, how many
// versions exist and where its aliases point.
type Model struct {
	Workspace string         `json:"workspace"`
	Name      string         `json:"name"`
	Versions  int            `json:"versions"`
	Latest    ModelVersion   `json:"latest"`
	Aliases   map[string]int `json:"aliases"`
	CreatedAt time.Time      `json:"created_at"`
}

// ModelVersionCreate is what the store records for a new version: the
// stored blob, the signature read from it, and its origin. The store
// assigns Version and CreatedAt.
type ModelVersionCreate struct {
	Name         string
	Blob         Blob
	Description  string
	IRVersion    int64
	Opset        int64
	Producer     string
	Inputs       []TensorSpec
	Outputs      []TensorSpec
	Tags         map[string]string
	RunID        string // lineage; the store fills in the experiment
	ArtifactPath string
}

// VersionRef selects a version of a model: a number, an alias, or the
// latest version when both are zero.
type VersionRef struct {
	Version int
	Alias   string
}

// String renders the ref as the CLI writes it after the model name:
// ":3", "@production" or "" (latest).
func (r VersionRef) String() string {
	switch {
	case r.Alias != "":
		return "@" + r.Alias
	case r.Version > 0:
		return ":" + strconv.Itoa(r.Version)
	}
	return ""
}

// Latest is the path segment (and CLI version) that names the latest
// version of a model.
const Latest = "latest"

// AliasRule says what an alias may be.
const AliasRule = "1-64 characters from a-z A-Z 0-9 . _ -, starting with a letter, and not \"latest\""

var aliasRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)

// CheckAlias validates an alias name. Aliases start with a letter so they
// never read as a version number. The error wraps ErrInvalid.
func CheckAlias(alias string) error {
	if !aliasRE.MatchString(alias) || alias == Latest {
		return fmt.Errorf("alias %q: must be %s: %w", alias, AliasRule, ErrInvalid)
	}
	return nil
}

// ParseVersionRef parses the version part of a model reference as it
// appears in API paths: a positive number, "latest" (or ""), an alias, or
// "@alias".
func ParseVersionRef(s string) (VersionRef, error) {
	if s == "" || s == Latest {
		return VersionRef{}, nil
	}
	if a, ok := strings.CutPrefix(s, "@"); ok {
		if err := CheckAlias(a); err != nil {
			return VersionRef{}, err
		}
		return VersionRef{Alias: a}, nil
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return VersionRef{}, fmt.Errorf("version %q: expected a positive whole number, %q or an alias: %w", s, Latest, ErrInvalid)
		}
		return VersionRef{Version: n}, nil
	}
	if err := CheckAlias(s); err != nil {
		return VersionRef{}, err
	}
	return VersionRef{Alias: s}, nil
}

// ParseModelRef splits "NAME", "NAME:VERSION" or "NAME@ALIAS" into the
// model name and a VersionRef ("NAME" and "NAME:latest" select the latest
// version).
func ParseModelRef(s string) (string, VersionRef, error) {
	if name, alias, ok := strings.Cut(s, "@"); ok {
		if err := CheckName("model", name); err != nil {
			return "", VersionRef{}, err
		}
		if err := CheckAlias(alias); err != nil {
			return "", VersionRef{}, err
		}
		return name, VersionRef{Alias: alias}, nil
	}
	name, v, ok := strings.Cut(s, ":")
	if err := CheckName("model", name); err != nil {
		return "", VersionRef{}, err
	}
	if !ok {
		return name, VersionRef{}, nil
	}
	if v == "" || (v != Latest && (v[0] < '0' || v[0] > '9')) {
		return "", VersionRef{}, fmt.Errorf("model %q: version %q: expected a positive whole number or %q (use NAME@ALIAS for an alias): %w", s, v, Latest, ErrInvalid)
	}
	ref, err := ParseVersionRef(v)
	return name, ref, err
}

// ModelStore keeps the model registry of each workspace.
type ModelStore interface {
	// CreateModelVersion records the next version of mc.Name (1 for a new
	// name); version numbers increase per model and are never reused, even
	// after a delete. With RunID set the run must exist in ws.
	CreateModelVersion(ctx context.Context, ws string, mc ModelVersionCreate) (ModelVersion, error)
	// ListModels returns each model with at least one version, by name.
	ListModels(ctx context.Context, ws string) ([]Model, error)
	// ListModelVersions returns the versions of a model, newest first.
	ListModelVersions(ctx context.Context, ws, name string) ([]ModelVersion, error)
	// GetModelVersion resolves ref; ErrNotFound names the model, version
	// or alias that does not exist.
	GetModelVersion(ctx context.Context, ws, name string, ref VersionRef) (ModelVersion, error)
	// SetModelAlias points alias at a version, moving it if it pointed
	// elsewhere.
	SetModelAlias(ctx context.Context, ws, name, alias string, version int) (ModelVersion, error)
	// DeleteModelAlias removes an alias; ErrNotFound if it does not exist.
	DeleteModelAlias(ctx context.Context, ws, name, alias string) error
	// SetModelVersionTags sets (adds or replaces) tags of a version.
	SetModelVersionTags(ctx context.Context, ws, name string, ref VersionRef, tags map[string]string) (ModelVersion, error)
	// DeleteModelVersion deletes a version. It is refused with ErrConflict
	// while the version is deployed, and while an alias points at it
	// unless force is set (which deletes those aliases). The blob is not
	// deleted: other versions or run artifacts may share it.
	DeleteModelVersion(ctx context.Context, ws, name string, version int, force bool) error
}
