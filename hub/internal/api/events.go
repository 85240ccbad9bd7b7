package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// eventPoll is how often a follower of the event log looks for new events.
// Events are recorded by the hub's observers and the telemetry ingestion,
// not through the API, so followers poll the store (an indexed range
// read) instead of waiting for an in-process notification.
const eventPoll = 500 * time.Millisecond

// eventPage is the page size of event reads (and the default limit).
const eventPage = 1000

func (a *API) eventRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/events", Summary: "List or follow the event log (NDJSON of Event, in id order)", Response: "ndjson:Event", Status: 200,
			Query: []string{"after", "kind", "agent", "deployment", "since", "limit", "follow"}, handler: a.getEvents},
	}
}

// parseEventQuery reads the query parameters of GET /api/v1/events: after
// (an event id), kind (repeated or comma-separated), agent, deployment,
// since (RFC 3339 time, or a Go duration before now such as 1h), limit
// (1 to 10000).
func parseEventQuery(r *http.Request, now time.Time) (hub.EventQuery, error) {
	v := r.URL.Query()
	var q hub.EventQuery
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("query parameter after=%q: expected an event id >= 0: %w", s, hub.ErrInvalid)
		}
		q.After = n
	}
	known := hub.EventKinds()
	for _, s := range v["kind"] {
		for k := range strings.SplitSeq(s, ",") {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			if !slices.Contains(known, k) {
				return q, fmt.Errorf("query parameter kind=%q: expected one of %s: %w", k, strings.Join(known, ", "), hub.ErrInvalid)
			}
			q.Kinds = append(q.Kinds, k)
		}
	}
	q.Agent, q.Deployment = v.Get("agent"), v.Get("deployment")
	if s := v.Get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			q.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			q.Since = t
		} else {
			return q, fmt.Errorf("query parameter since=%q: expected an RFC 3339 time or a duration before now such as 90m: %w", s, hub.ErrInvalid)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10_000 {
			return q, fmt.Errorf("query parameter limit=%q: expected 1 to 10000: %w", s, hub.ErrInvalid)
		}
		q.Limit = n
	}
	return q, nil
}

// getEvents writes matching events as NDJSON. Without follow it writes at
// most limit (default 1000) events after the cursor and ends; the caller
// pages with after= the last id. With follow=true it writes every matching
// event and then new ones as they are recorded (seen within eventPoll),
// until the client goes away or the API is closed; limit is then the page
// size.
func (a *API) getEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	follow, err := boolParam(r, "follow")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := parseEventQuery(r, time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if q.Limit == 0 {
		q.Limit = eventPage
	}
	started := false
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flusher, _ := w.(http.Flusher)
	var tick *time.Ticker
	for {
		evs, err := a.store.ListEvents(ctx, q)
		if err != nil {
			if !started {
				a.fail(w, r, err)
			}
			return
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return
			}
			q.After = e.ID
		}
		if err := bw.Flush(); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if !follow {
			return
		}
		if len(evs) == q.Limit {
			continue
		}
		if tick == nil {
			tick = time.NewTicker(eventPoll)
			defer tick.Stop()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		}
	}
}
