package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/drift"
)

// driftRoutes are the input drift and captured input routes of a
// deployment (docs/drift.md).
func (a *API) driftRoutes() []Route {
	const dep = "/api/v1/workspaces/{ws}/deployments/{name}"
	return []Route{
		{Method: "GET", Pattern: dep + "/drift", Summary: "Input drift of a deployment: per feature PSI and KS distance of a window against the baseline (since: RFC 3339 time or a duration before now, default 1h)",
			Response: "DriftReport", Status: 200, Query: []string{"since"}, handler: a.getDrift},
		{Method: "GET", Pattern: dep + "/captured", Summary: "Captured inputs (KServe v2 request bodies) with id > after, oldest first, at most limit (default and maximum 10000)",
			Response: "[]CapturedInput", Status: 200, Query: []string{"after", "limit"}, handler: a.getCaptured},
	}
}

// evaluator is cheap to make: it holds only the config and references,
// with the same defaults as the hub's background one.
func (a *API) evaluator() (*drift.Evaluator, error) {
	return drift.NewEvaluator(drift.EvaluatorConfig{}, a.store, a.blobs, a.log)
}

func (a *API) getDrift(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	since := now.Add(-drift.DefaultWindow)
	if s := r.URL.Query().Get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil && t.Before(now) {
			since = t
		} else {
			a.fail(w, r, fmt.Errorf("query parameter since=%q: expected an RFC 3339 time in the past or a positive duration such as 90m: %w", s, hub.ErrInvalid))
			return
		}
	}
	d, err := a.store.GetDeployment(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ev, err := a.evaluator()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := ev.Report(r.Context(), d, since, now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (a *API) getCaptured(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after int64
	limit := 0
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			a.fail(w, r, fmt.Errorf("query parameter after=%q: expected an id >= 0: %w", s, hub.ErrInvalid))
			return
		}
		after = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10_000 {
			a.fail(w, r, fmt.Errorf("query parameter limit=%q: expected 1 to 10000: %w", s, hub.ErrInvalid))
			return
		}
		limit = n
	}
	d, err := a.store.GetDeployment(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.store.CapturedInputs(r.Context(), d.Name, after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []hub.CapturedInput{}
	}
	writeJSON(w, http.StatusOK, list)
}

// withDrifting sets Drifting on each deployment the evaluator recorded as
// drifting.
func (a *API) withDrifting(r *http.Request, deps []hub.Deployment) error {
	drifting, err := a.store.DriftingDeployments(r.Context())
	if err != nil {
		return err
	}
	for i := range deps {
		deps[i].Drifting = drifting[deps[i].Name]
	}
	return nil
}
