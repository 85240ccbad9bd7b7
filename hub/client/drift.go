package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/atelier-ml/atelier/hub"
)

// DeploymentDrift returns the input drift of deployment name: each
// feature's PSI and KS distance over the window from since to now against
// the deployment's baseline. since is an RFC 3339 time or a duration
// before now ("1h"); empty takes the hub's default window (1h). Errors:
// hub.ErrInvalid (since), hub.ErrNotFound (workspace or deployment).
func (c *Client) DeploymentDrift(ctx context.Context, ws, name, since string) (*hub.DriftReport, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	var rep hub.DriftReport
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "deployments", name, "drift"), q, nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// CapturedInputs returns up to limit (1 to 10,000; 0 takes 10,000)
// captured inputs of deployment name with ID above after, oldest first.
// Page through them by passing the last ID as after until a page is
// empty.
func (c *Client) CapturedInputs(ctx context.Context, ws, name string, after int64, limit int) ([]hub.CapturedInput, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var list []hub.CapturedInput
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "deployments", name, "captured"), q, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}
