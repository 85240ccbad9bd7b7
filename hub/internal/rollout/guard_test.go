package rollout

import (
	"context"
	"fmt"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// The guard rules stored with a deployment reach every targeted agent's
// DeploymentSpec, and changing them is a new generation.
func TestGuardRulesReachAgentSpec(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.enroll("a", map[string]string{"zone": "eu"})
	e.deploy(hub.DeploymentCreate{Name: "guarded", Model: "clf:2", Agents: []string{a},
		Guard: &hub.GuardRules{RollbackIf: "error_rate > 0.05 or latency_p99 > 50ms", Probation: "90s", MinRequests: 40}})
	e.deploy(hub.DeploymentCreate{Name: "plain", Model: "clf:1", Agents: []string{a}})
	p := newRecorder()
	r := New(Config{}, e.store, nil)
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	d, _ := p.last(a)
	g := d.GetDeployments()[0].GetGuard()
	if d.GetDeployments()[0].GetName() != "guarded" || g.GetRollbackIf() != "error_rate > 0.05 or latency_p99 > 50ms" ||
		g.GetProbationSeconds() != 90 || g.GetMinRequests() != 40 {
		t.Fatalf("guarded spec: %v", d.GetDeployments()[0])
	}
	if g := d.GetDeployments()[1].GetGuard(); g != nil {
		t.Errorf("plain spec has guard %v", g)
	}

	// Default probation; a changed rule is a new generation.
	dep, err := e.store.GetDeployment(ctx, "w", "guarded")
	if err != nil {
		t.Fatal(err)
	}
	s, err := hub.DeploymentUpdate{Guard: &hub.GuardRules{RollbackIf: "errors > 3"}}.Apply(dep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateDeployment(ctx, "w", s); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	d, n := p.last(a)
	g = d.GetDeployments()[0].GetGuard()
	if n != 2 || d.GetGeneration() != 2 || g.GetRollbackIf() != "errors > 3" || g.GetProbationSeconds() != 600 || g.GetMinRequests() != 0 {
		t.Fatalf("after rule change: %d pushes, generation %d, guard %v", n, d.GetGeneration(), g)
	}
}

func TestTargetsRolledBack(t *testing.T) {
	d := hub.Deployment{Name: "fraud", Version: 2, Agents: []string{"a", "b"}}
	agents := []hub.Agent{{ID: "a"}, {ID: "b"}}
	reports := map[string]*agentv1.ReportedState{
		"a": {Deployments: []*agentv1.DeploymentStatus{{Name: "fraud", State: agentv1.DeploymentStatus_STATE_ROLLED_BACK,
			ModelVersion: 1, RolledBackVersion: 2, Error: "rolled back from version 2 to 1: error_rate 0.5 > 0.05"}}},
		// b rolled back version 3, which the deployment no longer names.
		"b": {Deployments: []*agentv1.DeploymentStatus{{Name: "fraud", State: agentv1.DeploymentStatus_STATE_ROLLED_BACK,
			ModelVersion: 2, RolledBackVersion: 3, Error: "old"}}},
	}
	got := Targets(d, agents, reports)
	want := []hub.DeploymentTarget{
		{Agent: "a", State: hub.TargetRolledBack, ModelVersion: 1, RolledBackVersion: 2, Error: "rolled back from version 2 to 1: error_rate 0.5 > 0.05"},
		{Agent: "b", State: hub.TargetPending, ModelVersion: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets:\n got %+v\nwant %+v", got, want)
	}
}
