package agent

import (
	"errors"
	"fmt"
	"os"
	"regexp"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/fsutil"
	"github.com/atelier-ml/atelier/agent/internal/modelcache"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// NameRule is the syntax of a deployment name (it is a URL path segment of
// the scoring endpoint); it matches the hub's name rule.
const NameRule = "1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateDesired checks a DesiredState: generation ≥ 1, unique deployment
// names following NameRule, and a self-consistent ModelRef for each. The
// error wraps ErrInvalidDesired and names the offending deployment.
func ValidateDesired(d *agentv1.DesiredState) error {
	if d == nil {
		return fmt.Errorf("%w: missing", ErrInvalidDesired)
	}
	if d.GetGeneration() == 0 {
		return fmt.Errorf("%w: generation 0 (generations start at 1)", ErrInvalidDesired)
	}
	seen := make(map[string]bool, len(d.GetDeployments()))
	for i, dep := range d.GetDeployments() {
		if !nameRE.MatchString(dep.GetName()) {
			return fmt.Errorf("%w: generation %d: deployments[%d] name %q: must be %s", ErrInvalidDesired, d.GetGeneration(), i, dep.GetName(), NameRule)
		}
		if seen[dep.GetName()] {
			return fmt.Errorf("%w: generation %d: deployment %q listed twice", ErrInvalidDesired, d.GetGeneration(), dep.GetName())
		}
		seen[dep.GetName()] = true
		if err := modelcache.ValidateRef(dep.GetModel()); err != nil {
			return fmt.Errorf("%w: generation %d: deployment %q: %w", ErrInvalidDesired, d.GetGeneration(), dep.GetName(), err)
		}
	}
	return nil
}

// decodeDesired parses and validates a persisted or received DesiredState.
func decodeDesired(b []byte) (*agentv1.DesiredState, error) {
	var d agentv1.DesiredState
	if err := proto.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrInvalidDesired, err)
	}
	if err := ValidateDesired(&d); err != nil {
		return nil, err
	}
	return &d, nil
}

// served is a deployment version the Server answers with now.
type served struct {
	version uint32
	sha     string
}

// decodeServing parses DATA/serving.pb: a ReportedState whose deployments
// are the last good versions loaded (name, model_version, model_sha256).
func decodeServing(b []byte) (map[string]served, error) {
	var r agentv1.ReportedState
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrInvalidServing, err)
	}
	out := make(map[string]served, len(r.GetDeployments()))
	for i, d := range r.GetDeployments() {
		if !nameRE.MatchString(d.GetName()) {
			return nil, fmt.Errorf("%w: deployments[%d] name %q: must be %s", ErrInvalidServing, i, d.GetName(), NameRule)
		}
		if _, dup := out[d.GetName()]; dup {
			return nil, fmt.Errorf("%w: deployment %q listed twice", ErrInvalidServing, d.GetName())
		}
		if !modelcache.ValidDigest(d.GetModelSha256()) {
			return nil, fmt.Errorf("%w: deployment %q: model_sha256 %q is not 64 lower-case hex digits", ErrInvalidServing, d.GetName(), d.GetModelSha256())
		}
		out[d.GetName()] = served{version: d.GetModelVersion(), sha: d.GetModelSha256()}
	}
	return out, nil
}

func encodeServing(m map[string]served) []byte {
	r := &agentv1.ReportedState{}
	for _, name := range sortedKeys(m) {
		s := m[name]
		r.Deployments = append(r.Deployments, &agentv1.DeploymentStatus{
			Name: name, State: agentv1.DeploymentStatus_STATE_SERVING, ModelVersion: s.version, ModelSha256: s.sha,
		})
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	return b
}

// readState reads a persisted file; a missing file gives (nil, nil).
func readState(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func writeState(path string, b []byte) error {
	return fsutil.WriteFile(path, b, 0o600)
}
