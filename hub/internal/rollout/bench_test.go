package rollout

import (
	"context"
	"fmt"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

// BenchmarkSync measures a sync over 1000 agents and 10 selector
// deployments: "unchanged" is the cost of every notification that changes
// nothing (read agents, deployments and records, recompute and hash every
// state); "one change" adds one deployment reaching 10 agents (10 new
// generations written in one transaction and pushed).
func BenchmarkSync(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	for i := range 1000 {
		e.enroll(fmt.Sprintf("a%d", i), map[string]string{"zone": fmt.Sprint(i % 10), "rack": fmt.Sprint(i % 100)})
	}
	for z := range 10 {
		e.deploy(hub.DeploymentCreate{Name: fmt.Sprintf("z%d", z), Model: "clf:1", Selector: map[string]string{"zone": fmt.Sprint(z)}})
	}
	p := newRecorder()
	r := New(Config{}, e.store, nil)
	if err := r.Sync(ctx, p); err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if err := r.Sync(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one change", func(b *testing.B) {
		n := 0
		for b.Loop() {
			b.StopTimer()
			n++
			e.deploy(hub.DeploymentCreate{Name: fmt.Sprintf("r%d", n), Model: "clf:2", Selector: map[string]string{"rack": fmt.Sprint(n % 100)}})
			b.StartTimer()
			if err := r.Sync(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
