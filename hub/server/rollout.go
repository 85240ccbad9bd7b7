package server

import (
	"context"

	"github.com/atelier-ml/atelier/hub"
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

// notifyingStore is the store the API uses: it tells the rollout after the
// writes that change some agent's desired state without going through the
// deployment routes, so the state is pushed at once: an enrollment (a new
// agent a selector may match; its state is retained before it connects)
// and a forced workspace delete (which removes the workspace's
// deployments).
type notifyingStore struct {
	hub.Store
	ro *rollout.Rollout
}

func (s notifyingStore) Enroll(ctx context.Context, req hub.EnrollRequest) (hub.Agent, string, error) {
	a, secret, err := s.Store.Enroll(ctx, req)
	if err == nil {
		s.ro.Notify()
	}
	return a, secret, err
}

func (s notifyingStore) DeleteWorkspace(ctx context.Context, name string, force bool) error {
	err := s.Store.DeleteWorkspace(ctx, name, force)
	if err == nil {
		s.ro.Notify()
	}
	return err
}
