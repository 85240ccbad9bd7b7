package hub

import (
	"fmt"
	"time"

	"github.com/atelier-ml/atelier/internal/guard"
)

// Guard rule limits.
const (
	// DefaultProbation applies when rules have no Probation.
	DefaultProbation = 10 * time.Minute
	// MaxProbation bounds Probation (one week).
	MaxProbation = 7 * 24 * time.Hour
	// MaxGuardMinRequests bounds MinRequests.
	MaxGuardMinRequests = 1_000_000
)

// GuardRules are a deployment's rollback rules (see agentv1.GuardRules):
// after switching to a new version, each agent evaluates RollbackIf on its
// own telemetry for Probation and switches back by itself if it holds.
// The rule language is internal/guard's ("error_rate > 0.05 or
// latency_p99 > 50ms"; docs/deployments.md).
type GuardRules struct {
	RollbackIf string `json:"rollback_if"`
	// Probation is a Go duration ("10m"); empty means DefaultProbation.
	Probation string `json:"probation"`
	// MinRequests is how many requests the new version must have answered
	// before the rule is evaluated (0: the agent's default, 20).
	MinRequests int `json:"min_requests,omitempty"`
}

// Check validates the rules: RollbackIf parses, Probation is a whole
// number of seconds from 1s to MaxProbation, MinRequests is in range. The
// error wraps ErrInvalid and names the field (and, for a rule, the column).
func (g GuardRules) Check() error {
	if g.RollbackIf == "" {
		return fmt.Errorf("guard rollback_if: empty: expected a rule such as \"error_rate > 0.05 or latency_p99 > 50ms\": %w", ErrInvalid)
	}
	if _, err := guard.Parse(g.RollbackIf); err != nil {
		return fmt.Errorf("guard rollback_if %q: %w: %w", g.RollbackIf, err, ErrInvalid)
	}
	if _, err := g.ProbationDuration(); err != nil {
		return err
	}
	if g.MinRequests < 0 || g.MinRequests > MaxGuardMinRequests {
		return fmt.Errorf("guard min_requests %d: must be from 0 to %d: %w", g.MinRequests, MaxGuardMinRequests, ErrInvalid)
	}
	return nil
}

// ProbationDuration parses Probation (DefaultProbation when empty). The
// error wraps ErrInvalid.
func (g GuardRules) ProbationDuration() (time.Duration, error) {
	if g.Probation == "" {
		return DefaultProbation, nil
	}
	d, err := time.ParseDuration(g.Probation)
	if err != nil || d < time.Second || d > MaxProbation || d%time.Second != 0 {
		return 0, fmt.Errorf("guard probation %q: expected a whole number of seconds from 1s to %s, such as 10m: %w", g.Probation, MaxProbation, ErrInvalid)
	}
	return d, nil
}

// normalize returns the rules to store: nil for no rules (a nil g or an
// empty RollbackIf with nothing else set), the checked rules otherwise.
func normalizeGuard(g *GuardRules) (*GuardRules, error) {
	if g == nil || *g == (GuardRules{}) {
		return nil, nil
	}
	if err := g.Check(); err != nil {
		return nil, err
	}
	c := *g
	if c.Probation == "" {
		c.Probation = DefaultProbation.String()
	}
	return &c, nil
}
