package sqlite

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestDeploymentGuardRules(t *testing.T) {
	ctx := context.Background()
	st, path := openTest(t)
	register(t, st, "clf", 1)
	register(t, st, "clf", 2)
	edge := enrollAgent(t, st, "edge-1", nil)
	rules := &hub.GuardRules{RollbackIf: "error_rate > 0.05 or latency_p99 > 50ms", Probation: "10m", MinRequests: 50}
	d, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "fraud", Model: "clf:1", Agents: []string{edge}, Guard: rules}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Guard == nil || *d.Guard != *rules {
		t.Fatalf("created with guard %+v, stored %+v", rules, d.Guard)
	}
	// Another deployment without rules has none.
	plain, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "plain", Model: "clf:1", Agents: []string{edge}}))
	if err != nil || plain.Guard != nil {
		t.Fatalf("plain deployment: %v, guard %+v", err, plain.Guard)
	}

	// An update that changes only the model keeps the rules.
	s, err := hub.DeploymentUpdate{Model: "clf:2"}.Apply(d)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = st.UpdateDeployment(ctx, "w", s); err != nil || d.Version != 2 || d.Guard == nil || *d.Guard != *rules {
		t.Fatalf("update model: %v, version %d, guard %+v", err, d.Version, d.Guard)
	}
	// A bad rule is refused by the store too (a spec not built by Spec)
	// and loses nothing.
	bad := s
	bad.Guard = &hub.GuardRules{RollbackIf: "latency_p99 > 50", Probation: "10m"}
	if _, err := st.UpdateDeployment(ctx, "w", bad); !errors.Is(err, hub.ErrInvalid) {
		t.Fatalf("bad rule stored: %v", err)
	}
	// The rules survive a reopen.
	st.Close()
	st2, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	got, err := st2.GetDeployment(ctx, "w", "fraud")
	if err != nil || got.Guard == nil || *got.Guard != *rules {
		t.Fatalf("after reopen: %v, guard %+v", err, got.Guard)
	}
	// Guard {} removes the rules.
	s, err = hub.DeploymentUpdate{Guard: &hub.GuardRules{}}.Apply(got)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = st2.UpdateDeployment(ctx, "w", s); err != nil || got.Guard != nil {
		t.Fatalf("remove rules: %v, guard %+v", err, got.Guard)
	}
}
