package hub

import (
	"errors"
	"strings"
	"testing"
)

func TestGuardRulesCheck(t *testing.T) {
	base := DeploymentCreate{Name: "fraud", Model: "clf:1", Agents: []string{"edge-1"}}
	for _, tc := range []struct {
		name  string
		guard *GuardRules
		msg   string // "" means valid
	}{
		{"none", nil, ""},
		{"empty is none", &GuardRules{}, ""},
		{"full", &GuardRules{RollbackIf: "error_rate > 0.05 or latency_p99 > 50ms", Probation: "10m", MinRequests: 100}, ""},
		{"default probation", &GuardRules{RollbackIf: "errors > 3"}, ""},
		{"probation without rule", &GuardRules{Probation: "10m"}, `deployment "fraud": guard rollback_if: empty`},
		{"rule syntax", &GuardRules{RollbackIf: "error_rate > 0.05 or latency_p99 > 50"},
			`deployment "fraud": guard rollback_if "error_rate > 0.05 or latency_p99 > 50": rollback rule: column 36: "50" for latency_p99: missing unit`},
		{"unknown metric", &GuardRules{RollbackIf: "cpu > 0.5"}, `rollback rule: column 1: unknown metric "cpu"`},
		{"bad probation", &GuardRules{RollbackIf: "errors > 3", Probation: "ten minutes"}, `guard probation "ten minutes": expected a whole number of seconds from 1s to 168h0m0s`},
		{"sub-second probation", &GuardRules{RollbackIf: "errors > 3", Probation: "1500ms"}, `guard probation "1500ms"`},
		{"long probation", &GuardRules{RollbackIf: "errors > 3", Probation: "200h"}, `guard probation "200h"`},
		{"negative min requests", &GuardRules{RollbackIf: "errors > 3", MinRequests: -1}, `guard min_requests -1: must be from 0 to 1000000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := base
			dc.Guard = tc.guard
			spec, err := dc.Spec()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Spec: %v", err)
				}
				if tc.guard == nil || tc.guard.RollbackIf == "" {
					if spec.Guard != nil {
						t.Errorf("no rules given, spec has %+v", spec.Guard)
					}
				} else if spec.Guard == nil || spec.Guard.Probation == "" {
					t.Errorf("spec guard %+v, want the rules with a probation", spec.Guard)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Spec error %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

func TestDeploymentUpdateGuard(t *testing.T) {
	d := Deployment{Name: "fraud", Model: "clf", Version: 1, Agents: []string{"edge-1"},
		Guard: &GuardRules{RollbackIf: "errors > 3", Probation: "10m0s"}}
	spec, err := DeploymentUpdate{Model: "clf:2"}.Apply(d)
	if err != nil || spec.Guard == nil || *spec.Guard != *d.Guard {
		t.Fatalf("model update: %v, guard %+v (want kept)", err, spec.Guard)
	}
	spec, err = DeploymentUpdate{Guard: &GuardRules{RollbackIf: "latency_p95 > 20ms", Probation: "1m"}}.Apply(d)
	if err != nil || spec.Guard.RollbackIf != "latency_p95 > 20ms" || spec.Ref.Version != 1 {
		t.Fatalf("guard update: %v, %+v", err, spec)
	}
	if _, err := (DeploymentUpdate{Guard: &GuardRules{RollbackIf: "latency_p95 >"}}).Apply(d); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "column 14") {
		t.Fatalf("bad guard update: %v", err)
	}
}
