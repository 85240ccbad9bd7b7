package fleet

import (
	"context"
	"fmt"
	"testing"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// BenchmarkAgentDownload measures a whole model transfer over the real
// authenticated broker: the fleet serving 256 KiB chunks from the blob
// store, the real agent requesting them (window 8), verifying, writing and
// fsyncing each, then loading the file. Each iteration is a fresh agent
// with an empty cache.
func BenchmarkAgentDownload(b *testing.B) {
	const size = 16 << 20
	e := newEnv(b, Config{})
	sha := e.putModel(b, randomBytes(size, 9))
	ref, err := e.fleet.ModelRef(context.Background(), "big", 1, sha)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("bench-%d", i)
		i++
		if err := e.fleet.SetDesired(context.Background(), id, &agentv1.DesiredState{Generation: 1,
			Deployments: []*agentv1.DeploymentSpec{{Name: "big", Model: ref}}}); err != nil {
			b.Fatal(err)
		}
		_, stop := e.startAgent(b, id)
		e.obs.waitFor(b, id+" serving", func() bool {
			for _, r := range e.obs.reported[id] {
				for _, d := range r.GetDeployments() {
					if d.GetState() == agentv1.DeploymentStatus_STATE_SERVING {
						return true
					}
				}
			}
			return false
		})
		stop()
	}
}
