package client

import (
	"context"
	"net/http"

	"github.com/atelier-ml/atelier/hub"
)

// Agents are hub-wide: these calls take no workspace.

// CreateJoinToken creates a one-time join token carrying labels, valid for
// ttl (a Go duration such as "30m"; "" means the hub's default of 1h; at
// most 7 days). The token is in clear only in this answer.
func (c *Client) CreateJoinToken(ctx context.Context, labels map[string]string, ttl string) (*hub.JoinToken, error) {
	var t hub.JoinToken
	if err := c.do(ctx, http.MethodPost, apiPath("agents", "tokens"), nil, hub.JoinTokenCreate{Labels: labels, TTL: ttl}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Enroll trades a join token for an agent credential. An unknown, used or
// expired token is an *APIError with Status 401 and Code "unauthorized",
// whose message says which.
func (c *Client) Enroll(ctx context.Context, req hub.EnrollRequest) (*hub.Enrollment, error) {
	var e hub.Enrollment
	if err := c.do(ctx, http.MethodPost, apiPath("agents", "enroll"), nil, req, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListAgents returns every agent, revoked ones included, by name.
func (c *Client) ListAgents(ctx context.Context) ([]hub.Agent, error) {
	var as []hub.Agent
	if err := c.do(ctx, http.MethodGet, apiPath("agents"), nil, nil, &as); err != nil {
		return nil, err
	}
	return as, nil
}

// GetAgent returns one agent; hub.ErrNotFound if there is none with id.
func (c *Client) GetAgent(ctx context.Context, id string) (*hub.Agent, error) {
	var a hub.Agent
	if err := c.do(ctx, http.MethodGet, apiPath("agents", id), nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// RevokeAgent revokes an agent: the broker refuses it from now on and its
// open connections are closed. Revoking a revoked agent is harmless.
func (c *Client) RevokeAgent(ctx context.Context, id string) (*hub.Agent, error) {
	var a hub.Agent
	if err := c.do(ctx, http.MethodPost, apiPath("agents", id, "revoke"), nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}
