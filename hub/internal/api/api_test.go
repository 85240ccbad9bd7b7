package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
)

type env struct {
	t   testing.TB
	url string
	api *api.API
}

func newEnv(t testing.TB, cfg api.Config) *env {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "hub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bl, err := blobfs.Open(filepath.Join(dir, "blobs"), log)
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(cfg, st, bl, log)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(a.Close)
	return &env{t: t, url: srv.URL, api: a}
}

// do sends a request; body may be nil, a []byte/string (sent raw) or a
// value (sent as JSON). It returns the status and the body.
func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// ok sends a request that must succeed with want, decoding into v.
func (e *env) ok(want int, method, path string, body, v any) {
	e.t.Helper()
	code, out := e.do(method, path, body)
	if code != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, code, out, want)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, out, err)
		}
	}
}

// fails sends a request that must fail with status want, code and an error
// message containing every one of contains.
func (e *env) fails(want int, code, method, path string, body any, contains ...string) {
	e.t.Helper()
	got, out := e.do(method, path, body)
	var eb hub.ErrorBody
	if err := json.Unmarshal(out, &eb); err != nil {
		e.t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, out, err)
	}
	if got != want || eb.Code != code {
		e.t.Fatalf("%s %s = %d %+v, want %d %s", method, path, got, eb, want, code)
	}
	for _, c := range contains {
		if !strings.Contains(eb.Error, c) {
			e.t.Errorf("%s %s: error %q does not mention %q", method, path, eb.Error, c)
		}
	}
}

const ws = "/api/v1/workspaces"

func (e *env) run(wsName, exp string) hub.Run {
	e.t.Helper()
	var r hub.Run
	e.ok(201, "POST", ws+"/"+wsName+"/runs", hub.RunCreate{Experiment: exp}, &r)
	return r
}

func TestWorkspaces(t *testing.T) {
	e := newEnv(t, api.Config{})
	var w hub.Workspace
	e.ok(201, "POST", ws, map[string]string{"name": "vision", "description": "cv"}, &w)
	if w.Name != "vision" || w.Description != "cv" || w.CreatedAt.IsZero() {
		t.Errorf("created %+v", w)
	}
	e.fails(409, "conflict", "POST", ws, map[string]string{"name": "vision"}, "already exists")
	e.fails(400, "invalid", "POST", ws, map[string]string{"name": "-bad name"}, "-bad name", hub.NameRule)
	e.fails(400, "invalid", "POST", ws, `{"name": "x", "nmae": 1}`, "nmae")
	e.fails(400, "invalid", "POST", ws, `{"name": "x"`, "offset")
	e.fails(400, "invalid", "POST", ws, `{"name": 5}`, "name", "string")
	e.fails(400, "invalid", "POST", ws, ``, "empty")
	e.fails(404, "not_found", "GET", ws+"/nope", nil, `workspace "nope"`)
	e.fails(405, "method_not_allowed", "PUT", ws+"/vision", nil, "GET")

	var list []hub.Workspace
	e.ok(200, "GET", ws, nil, &list)
	if len(list) != 1 || list[0].Name != "vision" {
		t.Errorf("list = %+v", list)
	}
	e.ok(201, "POST", ws+"/vision/experiments", map[string]string{"name": "resnet"}, nil)
	e.fails(409, "conflict", "POST", ws+"/vision/experiments", map[string]string{"name": "resnet"}, "resnet")
	e.fails(404, "not_found", "GET", ws+"/vision/experiments/nope", nil, `experiment "nope"`)
	e.run("vision", "resnet")
	e.ok(200, "GET", ws+"/vision", nil, &w)
	if w.Experiments != 1 || w.Runs != 1 {
		t.Errorf("counts = %+v, want 1 experiment and 1 run", w)
	}
	e.fails(409, "conflict", "DELETE", ws+"/vision", nil, "force=true")
	e.fails(400, "invalid", "DELETE", ws+"/vision?force=maybe", nil, "force")
	e.ok(204, "DELETE", ws+"/vision?force=true", nil, nil)
	e.fails(404, "not_found", "GET", ws+"/vision", nil, "vision")
	e.ok(201, "POST", ws, map[string]string{"name": "empty"}, nil)
	e.ok(204, "DELETE", ws+"/empty", nil, nil)
}

func TestRunLifecycle(t *testing.T) {
	e := newEnv(t, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	var r hub.Run
	e.ok(201, "POST", ws+"/w/runs", hub.RunCreate{Experiment: "exp", Name: "first", Params: map[string]string{"lr": "0.1"}, Tags: map[string]string{"team": "a"}, Command: []string{"python", "train.py"}}, &r)
	if r.Status != hub.StatusQueued || r.Experiment != "exp" || r.Params["lr"] != "0.1" || r.Tags["team"] != "a" || len(r.Command) != 2 || r.Metrics == nil || r.Artifacts == nil {
		t.Fatalf("created %+v", r)
	}
	var exp hub.Experiment
	e.ok(200, "GET", ws+"/w/experiments/exp", nil, &exp)
	if exp.Runs != 1 {
		t.Errorf("experiment created on first use has %d runs", exp.Runs)
	}
	runPath := ws + "/w/runs/" + r.ID
	e.fails(404, "not_found", "POST", ws+"/w/runs", hub.RunCreate{Experiment: "exp", ParentID: "missing"}, `parent run "missing"`)
	var child hub.Run
	e.ok(201, "POST", ws+"/w/runs", hub.RunCreate{Experiment: "exp", ParentID: r.ID}, &child)
	if child.ParentID != r.ID {
		t.Errorf("child parent = %q", child.ParentID)
	}
	e.ok(201, "POST", ws, map[string]string{"name": "other"}, nil)
	e.fails(404, "not_found", "POST", ws+"/other/runs", hub.RunCreate{Experiment: "exp", ParentID: r.ID}, "parent run")

	// Params: write-once.
	e.ok(200, "POST", runPath+"/params", map[string]any{"params": map[string]string{"lr": "0.1", "epochs": "3"}}, &r)
	e.fails(409, "conflict", "POST", runPath+"/params", map[string]any{"params": map[string]string{"epochs": "3", "lr": "0.2"}}, `"lr"`, `"0.1"`, `"0.2"`)
	e.ok(200, "GET", runPath, nil, &r)
	if r.Params["epochs"] != "3" || r.Params["lr"] != "0.1" || len(r.Params) != 2 {
		t.Errorf("params after conflict = %v", r.Params)
	}
	e.fails(400, "invalid", "POST", runPath+"/params", map[string]any{"params": map[string]string{"bad key": "1"}}, "bad key", hub.KeyRule)

	// Tags: mutable.
	e.ok(200, "POST", runPath+"/tags", map[string]any{"tags": map[string]string{"team": "b", "x": "y"}}, &r)
	if r.Tags["team"] != "b" {
		t.Errorf("tag not changed: %v", r.Tags)
	}
	var afterDel hub.Run
	e.ok(200, "DELETE", runPath+"/tags/x", nil, &afterDel)
	if _, ok := afterDel.Tags["x"]; ok || afterDel.Tags["team"] != "b" {
		t.Errorf("tags after deleting x: %v", afterDel.Tags)
	}
	e.fails(404, "not_found", "DELETE", runPath+"/tags/x", nil, `tag "x"`)
	// A key with '/' is deleted with the slash escaped in the path.
	e.ok(200, "POST", runPath+"/tags", map[string]any{"tags": map[string]string{"ci/job": "7"}}, nil)
	var afterSlash hub.Run
	e.ok(200, "DELETE", runPath+"/tags/ci%2Fjob", nil, &afterSlash)
	if _, ok := afterSlash.Tags["ci/job"]; ok {
		t.Errorf("tag ci/job not deleted: %v", afterSlash.Tags)
	}

	// Status machine.
	e.fails(400, "invalid", "PATCH", runPath, hub.RunUpdate{Status: "done"}, `"done"`)
	e.ok(200, "PATCH", runPath, hub.RunUpdate{Status: hub.StatusRunning}, &r)
	if r.StartedAt == nil {
		t.Error("running run has no started_at")
	}
	e.fails(409, "conflict", "PATCH", runPath, hub.RunUpdate{Status: hub.StatusQueued}, "running", "queued")
	code := 0
	e.ok(200, "PATCH", runPath, hub.RunUpdate{Status: hub.StatusCompleted, ExitCode: &code}, &r)
	if r.EndedAt == nil || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("completed run = %+v", r)
	}
	e.fails(409, "conflict", "PATCH", runPath, hub.RunUpdate{Status: hub.StatusFailed}, "completed", "failed")
	e.ok(200, "PATCH", runPath, hub.RunUpdate{Status: hub.StatusCompleted}, nil) // idempotent retry
	// queued → final directly
	q := e.run("w", "exp")
	e.ok(200, "PATCH", ws+"/w/runs/"+q.ID, hub.RunUpdate{Status: hub.StatusCanceled}, &q)
	if q.Status != hub.StatusCanceled {
		t.Errorf("queued → canceled gave %s", q.Status)
	}
	e.fails(404, "not_found", "GET", ws+"/w/runs/nope", nil, `run "nope"`)
	e.fails(404, "not_found", "GET", ws+"/other/runs/"+r.ID, nil, "other")
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, api.Config{MaxMetricPoints: 2000, MaxBatchBytes: 1 << 20})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	r := e.run("w", "exp")
	p := ws + "/w/runs/" + r.ID + "/metrics"
	var pts []map[string]any
	for i := range 1500 {
		pts = append(pts, map[string]any{"name": "loss", "value": 1.0 / float64(i+1), "step": i})
	}
	pts = append(pts, map[string]any{"name": "acc", "value": 0.5, "step": 1, "timestamp": "2026-01-02T03:04:05Z"})
	var acc api.Accepted
	e.ok(200, "POST", p, map[string]any{"metrics": pts}, &acc)
	if acc.Accepted != 1501 {
		t.Errorf("accepted %d", acc.Accepted)
	}
	e.ok(200, "POST", p, `{"metrics": [{"name": "acc", "value": 0.25, "step": 0}]}`, nil) // older step: latest stays
	var run hub.Run
	e.ok(200, "GET", ws+"/w/runs/"+r.ID, nil, &run)
	if run.Metrics["loss"] != 1.0/1500 || run.Metrics["acc"] != 0.5 {
		t.Errorf("latest metrics = %v", run.Metrics)
	}
	var series []hub.MetricPoint
	e.ok(200, "GET", p+"?name=acc", nil, &series)
	if len(series) != 2 || series[0].Step != 0 || series[1].Value != 0.5 || series[1].Time.Year() != 2026 {
		t.Errorf("acc series = %+v", series)
	}

	for _, tc := range []struct {
		name, body string
		code       int
		contains   []string
	}{
		{"string value", `{"metrics": [{"name": "a", "value": 1}, {"name": "loss", "value": "high"}]}`, 400, []string{"metrics[1]", `"loss"`, "high"}},
		{"NaN", `{"metrics": [{"name": "loss", "value": "NaN"}]}`, 400, []string{"metrics[0]", "loss", "NaN"}},
		{"Inf literal", `{"metrics": [{"name": "loss", "value": 1e999}]}`, 400, []string{"metrics[0]", "loss", "finite"}},
		{"bool", `{"metrics": [{"name": "loss", "value": true}]}`, 400, []string{"metrics[0]", "boolean"}},
		{"bad name", `{"metrics": [{"name": "a b", "value": 1}]}`, 400, []string{"metrics[0]", `"a b"`}},
		{"no value", `{"metrics": [{"name": "a"}]}`, 400, []string{"metrics[0]", "value"}},
		{"unknown field", `{"metrics": [{"name": "a", "value": 1, "stp": 2}]}`, 400, []string{"stp"}},
		{"truncated", `{"metrics": [{"name": "a", "value": 1}`, 400, []string{"offset"}},
		{"bad step", `{"metrics": [{"name": "a", "value": 1, "step": 1.5}]}`, 400, []string{"step"}},
		{"bad time", `{"metrics": [{"name": "a", "value": 1, "timestamp": "yesterday"}]}`, 400, []string{"timestamp", "RFC 3339"}},
		{"trailing", `{"metrics": []} x`, 400, []string{"offset"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := *e
			e.t = t
			e.fails(tc.code, "invalid", "POST", p, tc.body, tc.contains...)
		})
	}
	var many []map[string]any
	for i := range 2001 {
		many = append(many, map[string]any{"name": "x", "value": i})
	}
	e.fails(413, "too_large", "POST", p, map[string]any{"metrics": many}, "2000")
	e.fails(413, "too_large", "POST", p, strings.Repeat(" ", 1<<20+1), fmt.Sprint(1<<20))
	// Nothing of the failed batches was stored.
	e.ok(200, "GET", p, nil, &series)
	if len(series) != 1502 {
		t.Errorf("stored %d points, want 1502", len(series))
	}
}

func TestLogsFollow(t *testing.T) {
	e := newEnv(t, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	r := e.run("w", "exp")
	p := ws + "/w/runs/" + r.ID
	var acc api.Accepted
	e.ok(200, "POST", p+"/logs", map[string]any{"lines": []hub.LogLine{{Text: "one"}, {Stream: "stderr", Text: "two"}}}, &acc)
	if acc.LastSeq != 2 {
		t.Errorf("last_seq = %d", acc.LastSeq)
	}
	e.fails(400, "invalid", "POST", p+"/logs", map[string]any{"lines": []hub.LogLine{{Stream: "stdlog", Text: "x"}}}, "lines[0]", "stdlog")

	resp, err := http.Get(e.url + p + "/logs?follow=true&after=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() hub.LogLine {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended early: %v", sc.Err())
		}
		var l hub.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := next(); l.Seq != 2 || l.Text != "two" || l.Stream != "stderr" {
		t.Errorf("first followed line = %+v", l)
	}
	// Lines appended while following arrive, with gap-free seqs.
	e.ok(200, "POST", p+"/logs", map[string]any{"lines": []hub.LogLine{{Text: "three"}}}, nil)
	if l := next(); l.Seq != 3 || l.Text != "three" {
		t.Errorf("live line = %+v", l)
	}
	e.ok(200, "PATCH", p, hub.RunUpdate{Status: hub.StatusFailed}, nil)
	if sc.Scan() {
		t.Errorf("stream went on after the run finished: %q", sc.Text())
	}
	e.fails(409, "conflict", "POST", p+"/logs", map[string]any{"lines": []hub.LogLine{{Text: "late"}}}, "failed")

	code, body := e.do("GET", p+"/logs", nil)
	if code != 200 || strings.Count(string(body), "\n") != 3 {
		t.Errorf("GET logs = %d %q", code, body)
	}
}

func TestFollowEndsOnClose(t *testing.T) {
	e := newEnv(t, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	r := e.run("w", "exp")
	resp, err := http.Get(e.url + ws + "/w/runs/" + r.ID + "/logs?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e.api.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("stream did not end cleanly: %v", err)
	}
}

func TestArtifactsAndSnapshot(t *testing.T) {
	e := newEnv(t, api.Config{MaxArtifactBytes: 1000})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	r := e.run("w", "exp")
	p := ws + "/w/runs/" + r.ID
	var a, b hub.Artifact
	e.ok(200, "PUT", p+"/artifacts/model/best.onnx", "weights", &a)
	e.ok(200, "PUT", p+"/artifacts/copy.onnx", "weights", &b)
	if a.SHA256 != b.SHA256 || a.Size != 7 || a.Path != "model/best.onnx" {
		t.Errorf("artifacts %+v %+v", a, b)
	}
	code, body := e.do("GET", p+"/artifacts/model/best.onnx", nil)
	if code != 200 || string(body) != "weights" {
		t.Errorf("GET artifact = %d %q", code, body)
	}
	var list []hub.Artifact
	e.ok(200, "GET", p+"/artifacts", nil, &list)
	if len(list) != 2 || list[0].Path != "copy.onnx" {
		t.Errorf("list = %+v", list)
	}
	for _, bad := range []string{"a%2F%2Fb", "a%2F.%2Fb", "a%2F..%2F..%2Fetc%2Fpasswd", "a%2F", "a%5Cb", "a%00b"} {
		e.fails(400, "invalid", "PUT", p+"/artifacts/"+bad, "x", "artifact path")
	}
	e.fails(413, "too_large", "PUT", p+"/artifacts/big", strings.Repeat("x", 1001), "1000")
	e.fails(404, "not_found", "GET", p+"/artifacts/missing", nil, "missing")
	e.fails(404, "not_found", "PUT", ws+"/w/runs/nope/artifacts/x", "x", "nope")

	e.fails(404, "not_found", "GET", p+"/snapshot", nil, "snapshot")
	e.fails(400, "invalid", "PUT", p+"/snapshot", "not gzip", "gzip")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("tar bytes"))
	zw.Close()
	var blob hub.Blob
	e.ok(200, "PUT", p+"/snapshot", buf.Bytes(), &blob)
	code, body = e.do("GET", p+"/snapshot", nil)
	if code != 200 || !bytes.Equal(body, buf.Bytes()) {
		t.Errorf("GET snapshot = %d, %d bytes", code, len(body))
	}
	var run hub.Run
	e.ok(200, "GET", p, nil, &run)
	if run.Snapshot == nil || run.Snapshot.SHA256 != blob.SHA256 || len(run.Artifacts) != 2 {
		t.Errorf("run = %+v", run)
	}
}

func TestQueryRuns(t *testing.T) {
	e := newEnv(t, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	ids := map[string]string{}
	for i, acc := range []float64{0.5, 0.9, 0.7} {
		name := fmt.Sprintf("r%d", i)
		var r hub.Run
		e.ok(201, "POST", ws+"/w/runs", hub.RunCreate{Experiment: "e1", Name: name, Params: map[string]string{"opt": []string{"sgd", "adam", "adam"}[i]}}, &r)
		ids[name] = r.ID
		e.ok(200, "POST", ws+"/w/runs/"+r.ID+"/metrics", map[string]any{"metrics": []map[string]any{{"name": "acc", "value": acc}}}, nil)
	}
	e.ok(201, "POST", ws+"/w/runs", hub.RunCreate{Experiment: "e2", Name: "other"}, nil)
	e.ok(201, "POST", ws+"/w/runs", hub.RunCreate{Experiment: "e1", Name: "nometric", Status: hub.StatusRunning}, nil)

	names := func(q string) string {
		t.Helper()
		var runs []hub.Run
		e.ok(200, "GET", ws+"/w/runs?"+q, nil, &runs)
		var n []string
		for _, r := range runs {
			n = append(n, r.Name)
		}
		return strings.Join(n, ",")
	}
	for _, tc := range []struct{ q, want string }{
		{"", "nometric,other,r2,r1,r0"},
		{"experiment=e1&order_by=metrics.acc:desc", "r1,r2,r0,nometric"},
		{"experiment=e1&order_by=metrics.acc:desc&top=1", "r1"},
		{"order_by=metrics.acc&top=2", "r0,r2"},
		{"filter=" + urlq("metrics.acc >= 0.7"), "r2,r1"},
		{"filter=" + urlq("metrics.acc > 0.6 and params.opt = 'adam'") + "&order_by=metrics.acc", "r2,r1"},
		{"filter=" + urlq(`params.opt != "adam"`), "r0"},
		{"filter=" + urlq("status = 'running'"), "nometric"},
		{"order_by=params.opt&experiment=e1", "r2,r1,r0,nometric"},
		{"order_by=created_at", "r0,r1,r2,other,nometric"},
	} {
		if got := names(tc.q); got != tc.want {
			t.Errorf("GET runs?%s = %s, want %s", tc.q, got, tc.want)
		}
	}
	e.fails(400, "invalid", "GET", ws+"/w/runs?filter="+urlq("metrics.acc >> 1"), nil, "position 14", "number")
	e.fails(400, "invalid", "GET", ws+"/w/runs?filter="+urlq("metrics.acc = 'x'"), nil, "position 15", "number")
	e.fails(400, "invalid", "GET", ws+"/w/runs?filter="+urlq("foo = 1"), nil, "position 1", "metrics.NAME")
	e.fails(400, "invalid", "GET", ws+"/w/runs?order_by=metrics.acc:up", nil, "asc or desc")
	e.fails(400, "invalid", "GET", ws+"/w/runs?top=0", nil, "top")
	e.fails(404, "not_found", "GET", ws+"/w/runs?experiment=nope", nil, `experiment "nope"`)
}

func urlq(s string) string {
	return strings.NewReplacer(" ", "%20", "=", "%3D", "'", "%27", "\"", "%22", ">", "%3E", "<", "%3C", "!", "%21").Replace(s)
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	e := newEnv(t, api.Config{})
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	e.ok(200, "GET", "/openapi.json", nil, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	routes := e.api.Routes()
	if len(routes) < 25 {
		t.Errorf("only %d routes", len(routes))
	}
	n := 0
	for _, rt := range routes {
		op, ok := doc.Paths[api.OpenAPIPath(rt.Pattern)][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s %s missing from /openapi.json", rt.Method, rt.Pattern)
			continue
		}
		if op["summary"] == "" || op["responses"] == nil {
			t.Errorf("%s %s: incomplete operation %v", rt.Method, rt.Pattern, op)
		}
		n++
	}
	total := 0
	for _, item := range doc.Paths {
		total += len(item)
	}
	if total != n {
		t.Errorf("document has %d operations, routes %d", total, n)
	}
	// Every $ref names a schema the document defines.
	var raw map[string]any
	e.ok(200, "GET", "/openapi.json", nil, &raw)
	defined := raw["components"].(map[string]any)["schemas"].(map[string]any)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				name := strings.TrimPrefix(r, "#/components/schemas/")
				if _, ok := defined[name]; !ok {
					t.Errorf("%s: $ref %q names no schema", path, r)
				}
			}
			for k, x := range v {
				walk(path+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", path, i), x)
			}
		}
	}
	walk("", raw)
	// And every route in package hub's route list is registered.
	for _, line := range []string{"POST /api/v1/workspaces/{ws}/runs/{run}/metrics", "GET /api/v1/workspaces/{ws}/runs/{run}/artifacts/{path...}", "DELETE /api/v1/workspaces/{ws}/runs/{run}/tags/{key}"} {
		found := false
		for _, rt := range routes {
			found = found || rt.Method+" "+rt.Pattern == line
		}
		if !found {
			t.Errorf("route %s not registered", line)
		}
	}
}
