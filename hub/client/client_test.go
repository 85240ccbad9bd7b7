package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

// seen is one request as the test server received it.
type seen struct {
	Method, Path, Query, Body, ContentType string
	ContentLength                          int64
}

// recorder is an HTTP server that records requests and answers each with
// the next canned response.
type recorder struct {
	mu     sync.Mutex
	reqs   []seen
	status int
	answer string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, seen{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, string(body), req.Header.Get("Content-Type"), req.ContentLength})
	status, answer := r.status, r.answer
	r.mu.Unlock()
	if status == 0 {
		status = 200
	}
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

func (r *recorder) last(t *testing.T) seen {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request received")
	}
	return r.reqs[len(r.reqs)-1]
}

func newServer(t *testing.T) (*recorder, *client.Client) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, client.New(srv.URL+"/", client.WithUserAgent("test"))
}

// TestRequestShapes checks each method's method, escaped path, query and
// body against the REST contract in package hub.
func TestRequestShapes(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		answer string
		call   func(c *client.Client) error
		want   seen
	}{
		{"create workspace", `{"name":"w1"}`, func(c *client.Client) error {
			w, err := c.CreateWorkspace(ctx, "w1", "d")
			if err == nil && w.Name != "w1" {
				return errors.New("bad decode")
			}
			return err
		}, seen{Method: "POST", Path: "/api/v1/workspaces", Body: `{"description":"d","name":"w1"}`, ContentType: "application/json"}},
		{"list workspaces", `[{"name":"a"},{"name":"b"}]`, func(c *client.Client) error {
			ws, err := c.ListWorkspaces(ctx)
			if err == nil && len(ws) != 2 {
				return errors.New("bad decode")
			}
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces"}},
		{"get workspace escapes", `{}`, func(c *client.Client) error {
			_, err := c.GetWorkspace(ctx, "a b/c")
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/a%20b%2Fc"}},
		{"delete workspace", ``, func(c *client.Client) error {
			return c.DeleteWorkspace(ctx, "w", false)
		}, seen{Method: "DELETE", Path: "/api/v1/workspaces/w"}},
		{"delete workspace force", ``, func(c *client.Client) error {
			return c.DeleteWorkspace(ctx, "w", true)
		}, seen{Method: "DELETE", Path: "/api/v1/workspaces/w", Query: "force=true"}},
		{"create experiment", `{}`, func(c *client.Client) error {
			_, err := c.CreateExperiment(ctx, "w", "e")
			return err
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/experiments", Body: `{"name":"e"}`, ContentType: "application/json"}},
		{"list experiments", `[]`, func(c *client.Client) error {
			_, err := c.ListExperiments(ctx, "w")
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/experiments"}},
		{"get experiment", `{}`, func(c *client.Client) error {
			_, err := c.GetExperiment(ctx, "w", "e")
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/experiments/e"}},
		{"create run", `{"id":"r1"}`, func(c *client.Client) error {
			_, err := c.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e", Params: map[string]string{"lr": "0.1"}})
			return err
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/runs", Body: `{"experiment":"e","params":{"lr":"0.1"}}`, ContentType: "application/json"}},
		{"list runs query", `[]`, func(c *client.Client) error {
			_, err := c.ListRuns(ctx, "w", client.RunQuery{Experiment: "e", Filter: "metrics.acc > 0.5", OrderBy: "metrics.acc:desc", Top: 3})
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs", Query: "experiment=e&filter=metrics.acc+%3E+0.5&order_by=metrics.acc%3Adesc&top=3"}},
		{"get run", `{"id":"r1"}`, func(c *client.Client) error {
			_, err := c.GetRun(ctx, "w", "r1")
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs/r1"}},
		{"update run", `{"id":"r1"}`, func(c *client.Client) error {
			code := 0
			_, err := c.UpdateRun(ctx, "w", "r1", hub.RunUpdate{Status: hub.StatusCompleted, ExitCode: &code})
			return err
		}, seen{Method: "PATCH", Path: "/api/v1/workspaces/w/runs/r1", Body: `{"status":"completed","exit_code":0}`, ContentType: "application/json"}},
		{"set params", `{}`, func(c *client.Client) error {
			return c.SetParams(ctx, "w", "r1", map[string]string{"a": "1"})
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/runs/r1/params", Body: `{"params":{"a":"1"}}`, ContentType: "application/json"}},
		{"set tags", `{}`, func(c *client.Client) error {
			return c.SetTags(ctx, "w", "r1", map[string]string{"t": "x"})
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/runs/r1/tags", Body: `{"tags":{"t":"x"}}`, ContentType: "application/json"}},
		{"delete tag escapes slash", `{}`, func(c *client.Client) error {
			return c.DeleteTag(ctx, "w", "r1", "a/b")
		}, seen{Method: "DELETE", Path: "/api/v1/workspaces/w/runs/r1/tags/a%2Fb"}},
		{"log metrics", `{"accepted":1}`, func(c *client.Client) error {
			return c.LogMetrics(ctx, "w", "r1", []hub.MetricPoint{{Name: "loss", Value: 0.5, Step: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/runs/r1/metrics", Body: `{"metrics":[{"name":"loss","value":0.5,"step":2,"timestamp":"2026-01-02T03:04:05Z"}]}`, ContentType: "application/json"}},
		{"get metrics", `[{"name":"loss","value":1,"step":0}]`, func(c *client.Client) error {
			pts, err := c.GetMetrics(ctx, "w", "r1", "train/loss")
			if err == nil && (len(pts) != 1 || pts[0].Value != 1) {
				return errors.New("bad decode")
			}
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs/r1/metrics", Query: "name=train%2Floss"}},
		{"append logs", `{"accepted":1}`, func(c *client.Client) error {
			return c.AppendLogs(ctx, "w", "r1", []hub.LogLine{{Stream: hub.Stdout, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Text: "hi"}})
		}, seen{Method: "POST", Path: "/api/v1/workspaces/w/runs/r1/logs", Body: `{"lines":[{"stream":"stdout","time":"2026-01-02T03:04:05Z","text":"hi"}]}`, ContentType: "application/json"}},
		{"put artifact keeps slashes", `{"path":"out/m 1.onnx","size":3,"sha256":"x"}`, func(c *client.Client) error {
			a, err := c.PutArtifact(ctx, "w", "r1", "out/m 1.onnx", strings.NewReader("abc"), 3)
			if err == nil && a.Size != 3 {
				return errors.New("bad decode")
			}
			return err
		}, seen{Method: "PUT", Path: "/api/v1/workspaces/w/runs/r1/artifacts/out/m%201.onnx", Body: "abc", ContentType: "application/octet-stream", ContentLength: 3}},
		{"put artifact unknown size", `{"path":"a","size":3,"sha256":"x"}`, func(c *client.Client) error {
			_, err := c.PutArtifact(ctx, "w", "r1", "a", io.MultiReader(strings.NewReader("abc")), -1)
			return err
		}, seen{Method: "PUT", Path: "/api/v1/workspaces/w/runs/r1/artifacts/a", Body: "abc", ContentType: "application/octet-stream", ContentLength: -1}},
		{"list artifacts", `[]`, func(c *client.Client) error {
			_, err := c.ListArtifacts(ctx, "w", "r1")
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs/r1/artifacts"}},
		{"get artifact", `content`, func(c *client.Client) error {
			var b bytes.Buffer
			err := c.GetArtifact(ctx, "w", "r1", "d/x?y", &b)
			if err == nil && b.String() != "content" {
				return errors.New("bad content " + b.String())
			}
			return err
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs/r1/artifacts/d/x%3Fy"}},
		{"put snapshot", `{"sha256":"x","size":2}`, func(c *client.Client) error {
			_, err := c.PutSnapshot(ctx, "w", "r1", strings.NewReader("tz"), 2)
			return err
		}, seen{Method: "PUT", Path: "/api/v1/workspaces/w/runs/r1/snapshot", Body: "tz", ContentType: "application/octet-stream", ContentLength: 2}},
		{"get snapshot", `tgz`, func(c *client.Client) error {
			var b bytes.Buffer
			return c.GetSnapshot(ctx, "w", "r1", &b)
		}, seen{Method: "GET", Path: "/api/v1/workspaces/w/runs/r1/snapshot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c := newServer(t)
			rec.answer = tt.answer
			if err := tt.call(c); err != nil {
				t.Fatalf("call: %v", err)
			}
			got := rec.last(t)
			if got.Method != tt.want.Method || got.Path != tt.want.Path || got.Query != tt.want.Query {
				t.Errorf("request %s %s?%s, want %s %s?%s", got.Method, got.Path, got.Query, tt.want.Method, tt.want.Path, tt.want.Query)
			}
			if tt.want.ContentType != "" && got.ContentType != tt.want.ContentType {
				t.Errorf("content type %q, want %q", got.ContentType, tt.want.ContentType)
			}
			if tt.want.ContentLength != 0 && got.ContentLength != tt.want.ContentLength {
				t.Errorf("content length %d, want %d", got.ContentLength, tt.want.ContentLength)
			}
			if tt.want.ContentType == "application/json" {
				if !jsonEqual(t, got.Body, tt.want.Body) {
					t.Errorf("body %s, want %s", got.Body, tt.want.Body)
				}
			} else if got.Body != tt.want.Body {
				t.Errorf("body %q, want %q", got.Body, tt.want.Body)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("body %q is not JSON: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("want %q is not JSON: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		answer  string
		class   error
		message string
	}{
		{"not found", 404, `{"error":"run \"abc\" not found in workspace \"ws\"","code":"not_found"}`, hub.ErrNotFound, `run "abc" not found in workspace "ws"`},
		{"invalid", 400, `{"error":"bad filter","code":"invalid"}`, hub.ErrInvalid, "bad filter"},
		{"conflict", 409, `{"error":"param changed","code":"conflict"}`, hub.ErrConflict, "param changed"},
		{"too large", 413, `{"error":"too big","code":"too_large"}`, hub.ErrTooLarge, "too big"},
		{"status only", 404, `not json`, hub.ErrNotFound, "hub answered 404: not json"},
		{"server error", 500, `{"error":"disk full","code":"internal"}`, nil, "disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c := newServer(t)
			rec.status, rec.answer = tt.status, tt.answer
			_, err := c.GetRun(context.Background(), "ws", "abc")
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Status != tt.status {
				t.Errorf("status %d, want %d", ae.Status, tt.status)
			}
			if err.Error() != tt.message {
				t.Errorf("message %q, want %q", err.Error(), tt.message)
			}
			for _, class := range []error{hub.ErrInvalid, hub.ErrNotFound, hub.ErrConflict, hub.ErrTooLarge} {
				if got, want := errors.Is(err, class), class == tt.class; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", class, got, want)
				}
			}
		})
	}
}

func TestStreamLogs(t *testing.T) {
	var (
		mu      sync.Mutex
		queries []string
		gets    int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasSuffix(r.URL.Path, "/logs") {
			// GET run: still running after the first stream, then done.
			gets++
			status := hub.StatusRunning
			if gets > 1 {
				status = hub.StatusCompleted
			}
			json.NewEncoder(w).Encode(hub.Run{ID: "r", Status: status})
			return
		}
		queries = append(queries, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Each stream resends the line before `after` too, to check that
		// the client skips lines it already delivered.
		from := int64(1)
		if a := r.URL.Query().Get("after"); a != "" {
			fmt.Sscan(a, &from)
		}
		for i := from; i < from+2; i++ {
			json.NewEncoder(w).Encode(hub.LogLine{Seq: i, Stream: hub.Stdout, Text: strings.Repeat("x", int(i))})
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL)
	var got []int64
	err := c.StreamLogs(context.Background(), "w", "r", 0, true, func(l hub.LogLine) error {
		got = append(got, l.Seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if want := []string{"follow=true", "after=2&follow=true"}; fmt.Sprint(queries) != fmt.Sprint(want) {
		t.Errorf("queries %q, want %q", queries, want)
	}
	mu.Unlock()
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("got seqs %v, want [1 2 3] (each once, in order)", got)
	}
	stop := errors.New("stop")
	n := 0
	err = c.StreamLogs(context.Background(), "w", "r", 0, false, func(hub.LogLine) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Errorf("callback error: got %v after %d lines, want stop after 1", err, n)
	}
}

func TestDownloadTruncated(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "abc")
		// The handler returns early; the connection is cut short.
		if hj, ok := w.(http.Hijacker); ok {
			w.(http.Flusher).Flush()
			conn, _, _ := hj.Hijack()
			conn.Close()
		}
	}))
	defer srv.Close()
	var b bytes.Buffer
	err := client.New(srv.URL).GetArtifact(context.Background(), "w", "r", "a", &b)
	if err == nil {
		t.Fatalf("truncated download succeeded with %q", b.String())
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := client.New(url).ListWorkspaces(context.Background())
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		t.Fatalf("transport error reported as API error: %v", err)
	}
}

// closeRecorder is a reader that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestUploadDoesNotCloseReader(t *testing.T) {
	rec, c := newServer(t)
	rec.answer = `{"path":"a","size":3,"sha256":"x"}`
	r := &closeRecorder{Reader: strings.NewReader("abc")}
	if _, err := c.PutArtifact(context.Background(), "w", "r", "a", r, 3); err != nil {
		t.Fatal(err)
	}
	if r.closed {
		t.Error("PutArtifact closed the caller's reader")
	}
	if got := rec.last(t).Body; got != "abc" {
		t.Errorf("body %q", got)
	}
}
