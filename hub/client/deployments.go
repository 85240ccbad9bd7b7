package client

import (
	"context"
	"net/http"

	"github.com/atelier-ml/atelier/hub"
)

// CreateDeployment creates a deployment in workspace ws. dc.Model is
// NAME:VERSION, NAME@ALIAS or NAME (the latest version), resolved by the
// hub to one version. Errors: hub.ErrInvalid (bad name, model ref,
// targets or options), hub.ErrNotFound (workspace, model, version, alias
// or a target agent), hub.ErrConflict (the name is used in any
// workspace).
func (c *Client) CreateDeployment(ctx context.Context, ws string, dc hub.DeploymentCreate) (*hub.Deployment, error) {
	var d hub.Deployment
	if err := c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "deployments"), nil, dc, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// UpdateDeployment changes a deployment's model (resolved again), targets
// or options; the fields left empty in du keep their value.
func (c *Client) UpdateDeployment(ctx context.Context, ws, name string, du hub.DeploymentUpdate) (*hub.Deployment, error) {
	var d hub.Deployment
	if err := c.do(ctx, http.MethodPatch, apiPath("workspaces", ws, "deployments", name), nil, du, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// GetDeployment returns a deployment with the state of each agent it
// targets.
func (c *Client) GetDeployment(ctx context.Context, ws, name string) (*hub.Deployment, error) {
	var d hub.Deployment
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "deployments", name), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDeployments returns the deployments of ws by name, with their
// targets.
func (c *Client) ListDeployments(ctx context.Context, ws string) ([]hub.Deployment, error) {
	var list []hub.Deployment
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "deployments"), nil, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// DeleteDeployment deletes a deployment; its agents stop serving it.
func (c *Client) DeleteDeployment(ctx context.Context, ws, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("workspaces", ws, "deployments", name), nil, nil, nil)
}
