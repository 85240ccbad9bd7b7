package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/atelier-ml/atelier/hub"
)

// RegisterOptions are the optional parts of a model registration.
type RegisterOptions struct {
	Description string
	Tags        map[string]string
}

func (o RegisterOptions) values() url.Values {
	q := url.Values{}
	if o.Description != "" {
		q.Set("description", o.Description)
	}
	for k, v := range o.Tags {
		q.Add("tag", k+"="+v)
	}
	return q
}

// versionSegment renders a VersionRef as the {version} path segment.
func versionSegment(ref hub.VersionRef) string {
	switch {
	case ref.Alias != "":
		return ref.Alias
	case ref.Version > 0:
		return strconv.Itoa(ref.Version)
	}
	return hub.Latest
}

// RegisterModel registers the next version of model name in workspace ws
// from the ONNX file r streams. size is the exact length of r, or -1 if
// unknown. r is not closed. The hub refuses a file that is not a valid ONNX
// model (hub.ErrInvalid, naming what is wrong and at which byte offset) or
// that is larger than its limit (hub.ErrTooLarge); nothing is stored then.
func (c *Client) RegisterModel(ctx context.Context, ws, name string, r io.Reader, size int64, opts RegisterOptions) (*hub.ModelVersion, error) {
	return c.register(ctx, ws, name, opts.values(), struct{ io.Reader }{r}, size)
}

// RegisterModelFromRun registers the next version of model name from the
// artifact at path of run runID. The version shares the artifact's stored
// content (nothing is uploaded) and records the run and its experiment.
func (c *Client) RegisterModelFromRun(ctx context.Context, ws, name, runID, path string, opts RegisterOptions) (*hub.ModelVersion, error) {
	q := opts.values()
	q.Set("run", runID)
	q.Set("path", path)
	return c.register(ctx, ws, name, q, http.NoBody, 0)
}

func (c *Client) register(ctx context.Context, ws, name string, q url.Values, body io.Reader, size int64) (*hub.ModelVersion, error) {
	p := apiPath("workspaces", ws, "models", name, "versions")
	req, err := c.newRequest(ctx, http.MethodPost, p, q, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var mv hub.ModelVersion
	if err := json.NewDecoder(resp.Body).Decode(&mv); err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", p, err)
	}
	return &mv, nil
}

// ListModels returns the models of a workspace with their latest version,
// version count and aliases.
func (c *Client) ListModels(ctx context.Context, ws string) ([]hub.Model, error) {
	var ms []hub.Model
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "models"), nil, nil, &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// ListModelVersions returns the versions of a model, newest first.
func (c *Client) ListModelVersions(ctx context.Context, ws, name string) ([]hub.ModelVersion, error) {
	var vs []hub.ModelVersion
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "models", name, "versions"), nil, nil, &vs); err != nil {
		return nil, err
	}
	return vs, nil
}

// GetModelVersion returns the version ref selects (the latest for the
// zero ref). hub.ErrNotFound names the model, version or alias missing.
func (c *Client) GetModelVersion(ctx context.Context, ws, name string, ref hub.VersionRef) (*hub.ModelVersion, error) {
	var mv hub.ModelVersion
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "models", name, "versions", versionSegment(ref)), nil, nil, &mv); err != nil {
		return nil, err
	}
	return &mv, nil
}

// DownloadModel streams the ONNX file of a version into w. It does not
// check the digest: callers compare the sha256 of what they wrote with
// GetModelVersion's (and should download by number, not alias, so both
// calls see the same version). On error, w may have received part of the
// file.
func (c *Client) DownloadModel(ctx context.Context, ws, name string, ref hub.VersionRef, w io.Writer) error {
	return c.download(ctx, apiPath("workspaces", ws, "models", name, "versions", versionSegment(ref), "content"), w)
}

// SetModelAlias points alias at version of model name, moving it if it
// pointed at another version.
func (c *Client) SetModelAlias(ctx context.Context, ws, name, alias string, version int) (*hub.ModelVersion, error) {
	var mv hub.ModelVersion
	in := map[string]int{"version": version}
	if err := c.do(ctx, http.MethodPut, apiPath("workspaces", ws, "models", name, "aliases", alias), nil, in, &mv); err != nil {
		return nil, err
	}
	return &mv, nil
}

// DeleteModelAlias removes an alias; hub.ErrNotFound if it does not exist.
func (c *Client) DeleteModelAlias(ctx context.Context, ws, name, alias string) error {
	return c.do(ctx, http.MethodDelete, apiPath("workspaces", ws, "models", name, "aliases", alias), nil, nil, nil)
}

// SetModelTags sets (adds or replaces) tags of a model version.
func (c *Client) SetModelTags(ctx context.Context, ws, name string, ref hub.VersionRef, tags map[string]string) (*hub.ModelVersion, error) {
	var mv hub.ModelVersion
	in := map[string]map[string]string{"tags": tags}
	if err := c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "models", name, "versions", versionSegment(ref), "tags"), nil, in, &mv); err != nil {
		return nil, err
	}
	return &mv, nil
}

// DeleteModelVersion deletes a version. hub.ErrConflict while it is
// deployed, or while an alias points at it unless force is set (which
// deletes those aliases).
func (c *Client) DeleteModelVersion(ctx context.Context, ws, name string, version int, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, apiPath("workspaces", ws, "models", name, "versions", strconv.Itoa(version)), q, nil, nil)
}
