package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/atelier-ml/atelier/hub"
)

// MetricsWindow selects the window of DeploymentMetrics and AgentMetrics.
type MetricsWindow struct {
	// Since is a Go duration before now ("1h", "30m") or an RFC 3339 time;
	// empty means the hub's default (1h).
	Since string
	// Agent limits DeploymentMetrics to one agent (ignored by AgentMetrics).
	Agent string
}

// DeploymentMetrics summarizes deployment name's requests (of workspace
// ws) over the window, in total and per agent: counts by outcome, rates,
// latency percentiles, batch sizes. Errors: hub.ErrInvalid (bad since or
// agent), hub.ErrNotFound (workspace or deployment).
func (c *Client) DeploymentMetrics(ctx context.Context, ws, name string, w MetricsWindow) (*hub.DeploymentMetrics, error) {
	q := url.Values{}
	if w.Since != "" {
		q.Set("since", w.Since)
	}
	if w.Agent != "" {
		q.Set("agent", w.Agent)
	}
	var m hub.DeploymentMetrics
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "deployments", name, "metrics"), q, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// AgentMetrics summarizes agent id's own figures (CPU, memory, disk,
// spool) and the requests it served per deployment over the window.
// Errors: hub.ErrInvalid (bad since), hub.ErrNotFound (agent).
func (c *Client) AgentMetrics(ctx context.Context, id string, w MetricsWindow) (*hub.AgentMetrics, error) {
	q := url.Values{}
	if w.Since != "" {
		q.Set("since", w.Since)
	}
	var m hub.AgentMetrics
	if err := c.do(ctx, http.MethodGet, apiPath("agents", id, "metrics"), q, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
