package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// DefaultUserAgent is sent when no WithUserAgent option is given.
const DefaultUserAgent = "atelier-go-client/1"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client talks to one hub. It is safe for concurrent use and holds no
// resources of its own beyond its *http.Client's connection pool.
type Client struct {
	base string // scheme://host[:port][/prefix], no trailing slash
	hc   *http.Client
	ua   string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc. The default is
// a client with no overall timeout (log streams may stay open for long);
// bound calls with their context.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// New returns a client of the hub at baseURL (e.g. "http://127.0.0.1:8780").
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{}, ua: DefaultUserAgent}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the hub URL the client was created with (without a
// trailing slash).
func (c *Client) BaseURL() string { return c.base }

// apiPath joins escaped path segments under /api/v1.
func apiPath(segs ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// escapePath escapes each segment of a slash-separated artifact path and
// keeps the slashes.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// newRequest builds a request for path (already escaped) and query.
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// send performs req and turns a non-2xx answer into an *APIError. On
// success the caller closes the response body.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var body hub.ErrorBody
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Code, e.Message = body.Code, body.Error
		return e
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	e.Message = fmt.Sprintf("hub answered %d: %s", resp.StatusCode, text)
	return e
}

// do sends a JSON request (in may be nil) and decodes a JSON answer into
// out (may be nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// CreateWorkspace creates a workspace; hub.ErrConflict if it exists,
// hub.ErrInvalid for a bad name.
func (c *Client) CreateWorkspace(ctx context.Context, name, description string) (*hub.Workspace, error) {
	var w hub.Workspace
	in := map[string]string{"name": name, "description": description}
	if err := c.do(ctx, http.MethodPost, apiPath("workspaces"), nil, in, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWorkspaces returns all workspaces.
func (c *Client) ListWorkspaces(ctx context.Context) ([]hub.Workspace, error) {
	var ws []hub.Workspace
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces"), nil, nil, &ws); err != nil {
		return nil, err
	}
	return ws, nil
}

// GetWorkspace returns one workspace.
func (c *Client) GetWorkspace(ctx context.Context, name string) (*hub.Workspace, error) {
	var w hub.Workspace
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", name), nil, nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// DeleteWorkspace deletes a workspace. One that holds experiments or runs
// is refused with hub.ErrConflict unless force is set.
func (c *Client) DeleteWorkspace(ctx context.Context, name string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, apiPath("workspaces", name), q, nil, nil)
}

// CreateExperiment creates an experiment in workspace ws.
func (c *Client) CreateExperiment(ctx context.Context, ws, name string) (*hub.Experiment, error) {
	var e hub.Experiment
	in := map[string]string{"name": name}
	if err := c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "experiments"), nil, in, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListExperiments returns the experiments of workspace ws.
func (c *Client) ListExperiments(ctx context.Context, ws string) ([]hub.Experiment, error) {
	var es []hub.Experiment
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "experiments"), nil, nil, &es); err != nil {
		return nil, err
	}
	return es, nil
}

// GetExperiment returns one experiment.
func (c *Client) GetExperiment(ctx context.Context, ws, name string) (*hub.Experiment, error) {
	var e hub.Experiment
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "experiments", name), nil, nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// CreateRun creates a run (and its experiment, if missing).
func (c *Client) CreateRun(ctx context.Context, ws string, rc hub.RunCreate) (*hub.Run, error) {
	var r hub.Run
	if err := c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "runs"), nil, rc, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RunQuery selects runs for ListRuns. Filter and OrderBy use the query
// language of the hub (see hub/internal/filter): e.g. Filter
// "metrics.acc > 0.9 and params.lr = '0.1'", OrderBy "metrics.acc:desc".
// Zero fields select everything in the hub's default order.
type RunQuery struct {
	Experiment string
	Filter     string
	OrderBy    string
	Top        int
}

func (q RunQuery) values() url.Values {
	v := url.Values{}
	if q.Experiment != "" {
		v.Set("experiment", q.Experiment)
	}
	if q.Filter != "" {
		v.Set("filter", q.Filter)
	}
	if q.OrderBy != "" {
		v.Set("order_by", q.OrderBy)
	}
	if q.Top != 0 {
		v.Set("top", strconv.Itoa(q.Top))
	}
	return v
}

// ListRuns returns the runs of workspace ws selected by q. A filter the hub
// cannot parse is a hub.ErrInvalid whose message says where and why.
func (c *Client) ListRuns(ctx context.Context, ws string, q RunQuery) ([]hub.Run, error) {
	var rs []hub.Run
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "runs"), q.values(), nil, &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// GetRun returns one run with its params, tags, latest metrics and
// artifacts.
func (c *Client) GetRun(ctx context.Context, ws, id string) (*hub.Run, error) {
	var r hub.Run
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "runs", id), nil, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// UpdateRun applies a status transition; hub.ErrConflict if the run's
// status machine forbids it.
func (c *Client) UpdateRun(ctx context.Context, ws, id string, u hub.RunUpdate) (*hub.Run, error) {
	var r hub.Run
	if err := c.do(ctx, http.MethodPatch, apiPath("workspaces", ws, "runs", id), nil, u, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// SetParams records params. Params are write-once: setting a param again
// to the same value is fine, to another value is hub.ErrConflict and
// nothing of the call is stored.
func (c *Client) SetParams(ctx context.Context, ws, id string, params map[string]string) error {
	in := map[string]map[string]string{"params": params}
	return c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "runs", id, "params"), nil, in, nil)
}

// SetTags sets (or overwrites) tags.
func (c *Client) SetTags(ctx context.Context, ws, id string, tags map[string]string) error {
	in := map[string]map[string]string{"tags": tags}
	return c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "runs", id, "tags"), nil, in, nil)
}

// DeleteTag removes a tag.
func (c *Client) DeleteTag(ctx context.Context, ws, id, key string) error {
	return c.do(ctx, http.MethodDelete, apiPath("workspaces", ws, "runs", id, "tags", key), nil, nil, nil)
}

// LogMetrics appends metric points. A point with a zero Time is stamped by
// the hub on receipt.
func (c *Client) LogMetrics(ctx context.Context, ws, id string, pts []hub.MetricPoint) error {
	in := map[string][]hub.MetricPoint{"metrics": pts}
	return c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "runs", id, "metrics"), nil, in, nil)
}

// GetMetrics returns the metric series of a run ordered by name, step and
// time; all metrics when name is empty.
func (c *Client) GetMetrics(ctx context.Context, ws, id, name string) ([]hub.MetricPoint, error) {
	var q url.Values
	if name != "" {
		q = url.Values{"name": {name}}
	}
	var pts []hub.MetricPoint
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "runs", id, "metrics"), q, nil, &pts); err != nil {
		return nil, err
	}
	return pts, nil
}

// AppendLogs appends log lines; the hub assigns their sequence numbers.
func (c *Client) AppendLogs(ctx context.Context, ws, id string, lines []hub.LogLine) error {
	in := map[string][]hub.LogLine{"lines": lines}
	return c.do(ctx, http.MethodPost, apiPath("workspaces", ws, "runs", id, "logs"), nil, in, nil)
}

// StreamLogs calls fn with every log line of a run whose sequence number is
// above after, in order. With follow, it keeps waiting for new lines until
// the run reaches a final status or ctx is done. If the stream breaks (the
// hub restarts, the connection drops) before the run has ended, it
// reconnects from the last line received, giving up after a few failed
// attempts in a row (about half a minute). An error from fn stops the stream
// and is returned as is.
func (c *Client) StreamLogs(ctx context.Context, ws, id string, after int64, follow bool, fn func(hub.LogLine) error) error {
	last := after
	failures := 0
	for {
		got, err := c.streamLogsOnce(ctx, ws, id, &last, follow, fn)
		var fe fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case !follow:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			return err // the hub refused: unknown run, bad request
		}
		if err == nil {
			// The stream ended cleanly: normally because the run ended,
			// but a hub shutting down also ends streams.
			r, gerr := c.GetRun(ctx, ws, id)
			if gerr == nil && r.Status.Final() {
				return nil
			}
			if errors.As(gerr, &ae) && ae.Status < 500 {
				return gerr
			}
			err = gerr
			if err == nil {
				err = fmt.Errorf("log stream of run %q ended while the run is %s", id, r.Status)
			}
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if failures > maxFollowRetries {
			return err
		}
		t := time.NewTimer(min(time.Duration(failures)*followBackoff, maxFollowBackoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Reconnection of followed log streams.
const (
	maxFollowRetries = 10
	followBackoff    = 500 * time.Millisecond
	maxFollowBackoff = 5 * time.Second
)

// fnError carries an error of StreamLogs' callback, to tell it from
// transport errors.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// streamLogsOnce reads one log stream from after *last, advancing *last,
// and returns how many lines it delivered.
func (c *Client) streamLogsOnce(ctx context.Context, ws, id string, last *int64, follow bool, fn func(hub.LogLine) error) (int, error) {
	q := url.Values{}
	if *last > 0 {
		q.Set("after", strconv.FormatInt(*last, 10))
	}
	if follow {
		q.Set("follow", "true")
	}
	return readNDJSON(ctx, c, apiPath("workspaces", ws, "runs", id, "logs"), q, "log", func(l hub.LogLine) (bool, error) {
		if l.Seq > 0 && l.Seq <= *last {
			return false, nil // already delivered before a reconnect
		}
		if err := fn(l); err != nil {
			return false, err
		}
		*last = max(*last, l.Seq)
		return true, nil
	})
}

// readNDJSON GETs path with q and decodes the NDJSON stream of T it
// answers, calling deliver with each value until the stream ends (nil) or
// breaks. deliver reports whether it delivered the value (false: skipped,
// say, as seen before a reconnect); its error is returned as an fnError.
// It returns how many values were delivered.
func readNDJSON[T any](ctx context.Context, c *Client, path string, q url.Values, what string, deliver func(T) (bool, error)) (int, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	n := 0
	for {
		var v T
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("GET %s: read %s stream: %w", path, what, err)
		}
		ok, err := deliver(v)
		if err != nil {
			return n, fnError{err}
		}
		if ok {
			n++
		}
	}
}

// upload PUTs r as the raw body. size is the exact length, or -1 if
// unknown (the body is then sent chunked). r is never closed: net/http
// closes request bodies that are io.Closers, so r is hidden behind a plain
// io.Reader and stays the caller's.
func (c *Client) upload(ctx context.Context, path string, r io.Reader, size int64, out any) error {
	body := io.Reader(struct{ io.Reader }{r})
	if size == 0 {
		body = http.NoBody
	}
	req, err := c.newRequest(ctx, http.MethodPut, path, nil, body)
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	} else {
		req.ContentLength = -1
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("PUT %s: decode answer: %w", path, err)
	}
	return nil
}

// download GETs path and copies the body into w.
func (c *Client) download(ctx context.Context, path string, w io.Writer) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("GET %s: got %d bytes, hub announced %d", path, n, resp.ContentLength)
	}
	return nil
}

// PutArtifact uploads (or replaces) the artifact at path (slash-separated,
// relative) of a run, streaming r. size is the exact length of r, or -1 if
// unknown. r is not closed; the caller keeps it.
func (c *Client) PutArtifact(ctx context.Context, ws, id, path string, r io.Reader, size int64) (*hub.Artifact, error) {
	var a hub.Artifact
	p := apiPath("workspaces", ws, "runs", id, "artifacts") + "/" + escapePath(path)
	if err := c.upload(ctx, p, r, size, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListArtifacts returns the artifacts of a run.
func (c *Client) ListArtifacts(ctx context.Context, ws, id string) ([]hub.Artifact, error) {
	var as []hub.Artifact
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "runs", id, "artifacts"), nil, nil, &as); err != nil {
		return nil, err
	}
	return as, nil
}

// GetArtifact streams the content of one artifact into w. On error, w may
// have received part of the content.
func (c *Client) GetArtifact(ctx context.Context, ws, id, path string, w io.Writer) error {
	return c.download(ctx, apiPath("workspaces", ws, "runs", id, "artifacts")+"/"+escapePath(path), w)
}

// PutSnapshot uploads the script snapshot (a tar.gz) of a run, streaming
// r. size is the exact length of r, or -1 if unknown. r is not closed.
func (c *Client) PutSnapshot(ctx context.Context, ws, id string, r io.Reader, size int64) (*hub.Blob, error) {
	var b hub.Blob
	if err := c.upload(ctx, apiPath("workspaces", ws, "runs", id, "snapshot"), r, size, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// GetSnapshot streams the snapshot (a tar.gz) of a run into w.
func (c *Client) GetSnapshot(ctx context.Context, ws, id string, w io.Writer) error {
	return c.download(ctx, apiPath("workspaces", ws, "runs", id, "snapshot"), w)
}
