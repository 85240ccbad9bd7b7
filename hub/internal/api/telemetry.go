package api

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Telemetry routes: what agents measured, summarized over a window
// (hub.TelemetryStore), and the hub's Prometheus endpoint (Metrics).

// DefaultMetricsSince is the window of the metrics routes without since=.
const DefaultMetricsSince = time.Hour

// maxMetricsSince bounds since= given as a duration.
const maxMetricsSince = 400 * 24 * time.Hour

func (a *API) telemetryRoutes() []Route {
	const (
		dep   = "/api/v1/workspaces/{ws}/deployments/{name}/metrics"
		agent = "/api/v1/agents/{id}/metrics"
	)
	return []Route{
		{Method: "GET", Pattern: dep, Summary: "A deployment's requests over a window (since=1h by default, a Go duration or an RFC 3339 time), in total and per agent (agent= for one): counts by outcome, rates, latency percentiles, batch sizes (hub.DeploymentMetrics)",
			Response: "DeploymentMetrics", Status: 200, Query: []string{"since", "agent"}, handler: a.deploymentMetrics},
		{Method: "GET", Pattern: agent, Summary: "An agent's own figures over a window (since=1h by default) and the requests it served per deployment (hub.AgentMetrics)",
			Response: "AgentMetrics", Status: 200, Query: []string{"since"}, handler: a.agentMetrics},
	}
}

// metricsQuery reads since= (and agent= when allowed) of r.
func metricsQuery(r *http.Request, now time.Time, allowAgent bool) (hub.MetricsQuery, error) {
	q := hub.MetricsQuery{Since: now.Add(-DefaultMetricsSince)}
	v := r.URL.Query()
	for key := range v {
		if key != "since" && (key != "agent" || !allowAgent) {
			want := "since"
			if allowAgent {
				want = "since and agent"
			}
			return q, fmt.Errorf("query parameter %q: unknown; expected %s: %w", key, want, hub.ErrInvalid)
		}
	}
	if s := v.Get("since"); s != "" {
		since, err := ParseSince(s, now)
		if err != nil {
			return q, err
		}
		q.Since = since
	}
	if allowAgent {
		if id := v.Get("agent"); id != "" {
			if !topics.ValidAgentID(id) {
				return q, fmt.Errorf("query parameter agent=%q: expected an agent id matching [a-z0-9][a-z0-9-]{0,62}: %w", id, hub.ErrInvalid)
			}
			q.Agent = id
		}
	}
	return q, nil
}

// ParseSince parses a metrics window start: a positive Go duration before
// now (at most 400 days, "1h", "90m") or an RFC 3339 time not after now.
// Errors wrap hub.ErrInvalid and say what was expected.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 || d > maxMetricsSince {
			return time.Time{}, fmt.Errorf("query parameter since=%q: expected a duration above 0 and at most %s: %w", s, maxMetricsSince, hub.ErrInvalid)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("query parameter since=%q: expected a Go duration such as 1h or 30m, or an RFC 3339 time: %w", s, hub.ErrInvalid)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("query parameter since=%q: in the future (the hub's clock reads %s): %w", s, now.UTC().Format(time.RFC3339), hub.ErrInvalid)
	}
	return t, nil
}

func (a *API) deploymentMetrics(w http.ResponseWriter, r *http.Request) {
	ctx, ws, name := r.Context(), r.PathValue("ws"), r.PathValue("name")
	q, err := metricsQuery(r, time.Now(), true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The deployment must be this workspace's (404 otherwise, naming the
	// workspace): names are unique hub-wide and the store keeps telemetry
	// by name only, so it would answer for another workspace's deployment,
	// or for one deleted since, whose workspace it cannot tell.
	if _, err := a.store.GetDeployment(ctx, ws, name); err != nil {
		a.fail(w, r, err)
		return
	}
	m, err := a.store.DeploymentMetrics(ctx, name, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if m.Agents == nil {
		m.Agents = []hub.RequestMetrics{}
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *API) agentMetrics(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !topics.ValidAgentID(id) {
		a.fail(w, r, fmt.Errorf("agent %q: %w", id, hub.ErrNotFound))
		return
	}
	q, err := metricsQuery(r, time.Now(), false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	m, err := a.store.AgentMetrics(r.Context(), id, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if m.Deployments == nil {
		m.Deployments = []hub.RequestMetrics{}
	}
	writeJSON(w, http.StatusOK, m)
}

// MetricsSource adds series to GET /metrics (the server's telemetry
// pipeline counters). WritePrometheus writes complete families (HELP, TYPE
// and samples) in the Prometheus text format; it is called once per scrape,
// concurrently with other scrapes.
type MetricsSource interface {
	WritePrometheus(w io.Writer) error
}

// Metrics returns the handler of GET /metrics: the Prometheus text format
// (version 0.0.4) with the fleet's agents by state and, per deployment,
// request totals by outcome and the request latency histogram, from the
// store (running totals that survive restarts and retention), then the
// series of every src. The server mounts it in front of Handler (the
// API's catch-all answers any other method on /metrics with 404). A store
// error answers 500 and writes nothing.
func (a *API) Metrics(src ...MetricsSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := a.writePrometheus(r, &buf, src); err != nil {
			a.log.Error("metrics scrape failed", "err", err)
			http.Error(w, "metrics: internal error; see the hub's log", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
}

func (a *API) writePrometheus(r *http.Request, buf *bytes.Buffer, src []MetricsSource) error {
	ctx := r.Context()
	agents, err := a.store.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	byState := map[hub.AgentState]int{hub.AgentOnline: 0, hub.AgentOffline: 0, hub.AgentRevoked: 0}
	for _, ag := range agents {
		byState[ag.State]++
	}
	states := make([]string, 0, len(byState))
	for s := range byState {
		states = append(states, string(s))
	}
	sort.Strings(states)
	buf.WriteString("# HELP atelier_agents Enrolled agents by state.\n# TYPE atelier_agents gauge\n")
	for _, s := range states {
		fmt.Fprintf(buf, "atelier_agents{state=\"%s\"} %d\n", labelValue(s), byState[hub.AgentState(s)])
	}

	totals, err := a.store.TelemetryTotals(ctx)
	if err != nil {
		return fmt.Errorf("telemetry totals: %w", err)
	}
	// By index: hub.DeploymentTotals holds a protobuf message (not to be copied).
	sort.Slice(totals, func(i, j int) bool { return totals[i].Deployment < totals[j].Deployment })
	const req, dur = "atelier_deployment_requests_total", "atelier_deployment_request_duration_seconds"
	fmt.Fprintf(buf, "# HELP %s Requests served by all agents of a deployment, by outcome.\n# TYPE %s counter\n", req, req)
	for i := range totals {
		t := &totals[i]
		outcomes := make([]string, 0, len(t.Requests))
		for o := range t.Requests {
			outcomes = append(outcomes, o)
		}
		sort.Strings(outcomes)
		for _, o := range outcomes {
			fmt.Fprintf(buf, "%s{deployment=\"%s\",outcome=\"%s\"} %d\n", req, labelValue(t.Deployment), labelValue(o), t.Requests[o])
		}
	}
	fmt.Fprintf(buf, "# HELP %s Request latency (queue and compute) at the agents, per deployment.\n# TYPE %s histogram\n", dur, dur)
	for i := range totals {
		t := &totals[i]
		h := &t.RequestSeconds
		bounds, counts := h.Bounds, h.Counts
		if len(counts) != len(bounds)+1 {
			continue // no histogram (no request yet) or a malformed one
		}
		d := labelValue(t.Deployment)
		var cum uint64
		for i, le := range bounds {
			cum += counts[i]
			fmt.Fprintf(buf, "%s_bucket{deployment=\"%s\",le=\"%s\"} %d\n", dur, d, promFloat(le), cum)
		}
		cum += counts[len(bounds)]
		fmt.Fprintf(buf, "%s_bucket{deployment=\"%s\",le=\"+Inf\"} %d\n", dur, d, cum)
		fmt.Fprintf(buf, "%s_sum{deployment=\"%s\"} %s\n%s_count{deployment=\"%s\"} %d\n", dur, d, promFloat(h.Sum), dur, d, cum)
	}
	for _, s := range src {
		if err := s.WritePrometheus(buf); err != nil {
			return err
		}
	}
	return nil
}

// labelValue escapes a Prometheus label value.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func promFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
