package server

import (
	"context"

	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/rollout"
)

// Deployments: the rollout computes every agent's desired state from the
// deployments and pushes it through the fleet (wired in Run).

// notifyingRevoker tells the rollout after a revocation, so the revoked
// agent leaves its bookkeeping (the revoker has already cleared the
// agent's desired state in the fleet).
type notifyingRevoker struct {
	api.AgentRevoker
	ro *rollout.Rollout
}

func (n notifyingRevoker) RevokeAgent(ctx context.Context, id string) error {
	err := n.AgentRevoker.RevokeAgent(ctx, id)
	n.ro.Notify()
	return err
}
