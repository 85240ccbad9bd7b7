package api

import (
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/atelier-ml/atelier/hub"
)

// Config holds the API's limits. Zero fields take the defaults.
type Config struct {
	MaxBodyBytes     int64 // JSON bodies other than metric and log batches (default 1 MiB)
	MaxBatchBytes    int64 // metric and log batch bodies (default 32 MiB)
	MaxMetricPoints  int   // points per metrics batch (default 100,000)
	MaxLogLines      int   // lines per logs batch (default 10,000)
	MaxArtifactBytes int64 // one artifact or snapshot (default 1 GiB)
	// AgentMQTTURL is the broker URL enrollment gives agents
	// (tcp://HOST:PORT); empty makes enrollment fail with 500.
	AgentMQTTURL string
	// AgentRevoker, when set, closes a revoked agent's sessions.
	AgentRevoker AgentRevoker
	// Rollout, when set, is told of deployment changes and gives each
	// targeted agent's state (see Rollout).
	Rollout Rollout
}

func (c *Config) defaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 32 << 20
	}
	if c.MaxMetricPoints <= 0 {
		c.MaxMetricPoints = 100_000
	}
	if c.MaxLogLines <= 0 {
		c.MaxLogLines = 10_000
	}
	if c.MaxArtifactBytes <= 0 {
		c.MaxArtifactBytes = 1 << 30
	}
}

// API serves the REST API. Create it with New; it is safe for concurrent
// use. Call Close when shutting down to end open log streams; the store and
// blobs stay owned by the caller.
type API struct {
	cfg     Config
	store   hub.Store
	blobs   hub.Blobs
	log     *slog.Logger
	follow  notifier
	closing chan struct{}
	once    sync.Once
	mux     *http.ServeMux
}

// New returns an API over store and blobs.
func New(cfg Config, store hub.Store, blobs hub.Blobs, log *slog.Logger) *API {
	cfg.defaults()
	a := &API{cfg: cfg, store: store, blobs: blobs, log: log, closing: make(chan struct{}), mux: http.NewServeMux()}
	byPath := map[string][]string{}
	for _, rt := range a.routes() {
		a.mux.HandleFunc(rt.Method+" "+rt.Pattern, rt.handler)
		byPath[rt.Pattern] = append(byPath[rt.Pattern], rt.Method)
	}
	// Every known path answers the other usual methods with a JSON 405.
	// They are registered method by method: a method-less pattern such as
	// "/api/v1/agents/tokens" would conflict with "GET /api/v1/agents/{id}".
	for p, methods := range byPath {
		if p == "/" {
			continue
		}
		sort.Strings(methods)
		allow := strings.Join(methods, ", ")
		h := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, hub.ErrorBody{
				Error: "method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + allow, Code: codeMethod})
		}
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if slices.Contains(methods, m) || m == "HEAD" && slices.Contains(methods, "GET") {
				continue
			}
			a.mux.HandleFunc(m+" "+p, h)
		}
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, hub.ErrorBody{Error: "no route for " + r.Method + " " + r.URL.Path + "; see /openapi.json", Code: "not_found"})
	})
	return a
}

// Handler returns the HTTP handler of the API.
func (a *API) Handler() http.Handler { return a.mux }

// Close ends every open log stream (follow=true) and makes new ones return
// at once. It is idempotent.
func (a *API) Close() { a.once.Do(func() { close(a.closing) }) }

// Route is one registered route with what the OpenAPI document says of it.
type Route struct {
	Method   string
	Pattern  string // net/http ServeMux pattern path
	Summary  string
	Request  string // schema name of the JSON body, "binary" or ""
	Response string // schema name, "binary", "ndjson" or ""
	Status   int    // success status
	Query    []string
	handler  http.HandlerFunc
}

// Routes lists the API's routes (for documentation and tests).
func (a *API) Routes() []Route { return a.routes() }

func (a *API) routes() []Route {
	return slices.Concat(a.coreRoutes(), a.telemetryRoutes(), a.driftRoutes(), a.eventRoutes(), a.datasetRoutes())
}

func (a *API) coreRoutes() []Route {
	const (
		ws  = "/api/v1/workspaces"
		one = ws + "/{ws}"
		run = one + "/runs/{run}"
	)
	return append([]Route{
		{Method: "GET", Pattern: "/healthz", Summary: "Liveness", Response: "Health", Status: 200, handler: a.health},
		{Method: "GET", Pattern: "/openapi.json", Summary: "This document", Response: "object", Status: 200, handler: a.openapi},
		{Method: "POST", Pattern: ws, Summary: "Create a workspace", Request: "WorkspaceCreate", Response: "Workspace", Status: 201, handler: a.createWorkspace},
		{Method: "GET", Pattern: ws, Summary: "List workspaces", Response: "[]Workspace", Status: 200, handler: a.listWorkspaces},
		{Method: "GET", Pattern: one, Summary: "Show a workspace", Response: "Workspace", Status: 200, handler: a.getWorkspace},
		{Method: "DELETE", Pattern: one, Summary: "Delete a workspace (409 if not empty unless force=true)", Status: 204, Query: []string{"force"}, handler: a.deleteWorkspace},
		{Method: "POST", Pattern: one + "/experiments", Summary: "Create an experiment", Request: "ExperimentCreate", Response: "Experiment", Status: 201, handler: a.createExperiment},
		{Method: "GET", Pattern: one + "/experiments", Summary: "List experiments", Response: "[]Experiment", Status: 200, handler: a.listExperiments},
		{Method: "GET", Pattern: one + "/experiments/{exp}", Summary: "Show an experiment", Response: "Experiment", Status: 200, handler: a.getExperiment},
		{Method: "POST", Pattern: one + "/runs", Summary: "Create a run (and its experiment if missing)", Request: "RunCreate", Response: "Run", Status: 201, handler: a.createRun},
		{Method: "GET", Pattern: one + "/runs", Summary: "Query runs", Response: "[]Run", Status: 200, Query: []string{"experiment", "filter", "order_by", "top"}, handler: a.listRuns},
		{Method: "GET", Pattern: run, Summary: "Show a run", Response: "Run", Status: 200, handler: a.getRun},
		{Method: "PATCH", Pattern: run, Summary: "Change a run's status", Request: "RunUpdate", Response: "Run", Status: 200, handler: a.updateRun},
		{Method: "POST", Pattern: run + "/params", Summary: "Record params (write-once)", Request: "Params", Response: "Run", Status: 200, handler: a.setParams},
		{Method: "POST", Pattern: run + "/tags", Summary: "Set tags", Request: "Tags", Response: "Run", Status: 200, handler: a.setTags},
		{Method: "DELETE", Pattern: run + "/tags/{key}", Summary: "Delete a tag", Response: "Run", Status: 200, handler: a.deleteTag},
		{Method: "POST", Pattern: run + "/metrics", Summary: "Append metric points (batch)", Request: "MetricBatch", Response: "Accepted", Status: 200, handler: a.appendMetrics},
		{Method: "GET", Pattern: run + "/metrics", Summary: "Metric series", Response: "[]MetricPoint", Status: 200, Query: []string{"name"}, handler: a.getMetrics},
		{Method: "POST", Pattern: run + "/logs", Summary: "Append log lines", Request: "LogBatch", Response: "Accepted", Status: 200, handler: a.appendLogs},
		{Method: "GET", Pattern: run + "/logs", Summary: "Read or follow log lines (NDJSON)", Response: "ndjson", Status: 200, Query: []string{"after", "follow"}, handler: a.getLogs},
		{Method: "PUT", Pattern: run + "/artifacts/{path...}", Summary: "Upload an artifact", Request: "binary", Response: "Artifact", Status: 200, handler: a.putArtifact},
		{Method: "GET", Pattern: run + "/artifacts", Summary: "List artifacts", Response: "[]Artifact", Status: 200, handler: a.listArtifacts},
		{Method: "GET", Pattern: run + "/artifacts/{path...}", Summary: "Download an artifact", Response: "binary", Status: 200, handler: a.getArtifact},
		{Method: "PUT", Pattern: run + "/snapshot", Summary: "Upload the script snapshot (tar.gz)", Request: "binary", Response: "Blob", Status: 200, handler: a.putSnapshot},
		{Method: "GET", Pattern: run + "/snapshot", Summary: "Download the script snapshot", Response: "binary", Status: 200, handler: a.getSnapshot},
	}, slices.Concat(a.modelRoutes(one), a.agentRoutes(), a.deploymentRoutes(one))...)
}
