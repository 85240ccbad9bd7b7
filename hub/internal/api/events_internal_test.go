package api

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// FuzzEventQuery: any query string either parses into a query within the
// limits or is refused with ErrInvalid; it never panics.
func FuzzEventQuery(f *testing.F) {
	for _, s := range []string{"", "after=3&kind=agent_online,rollback&since=1h&limit=10", "since=2026-01-02T03:04:05Z",
		"kind=&kind=,,", "after=-1", "limit=99999", "since=-5m", "agent=%ff&deployment=x"} {
		f.Add(s)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/api/v1/events", nil)
		r.URL.RawQuery = raw
		q, err := parseEventQuery(r, now)
		if err != nil {
			if !errors.Is(err, hub.ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", raw, err)
			}
			return
		}
		if q.After < 0 || q.Limit < 0 || q.Limit > 10_000 {
			t.Fatalf("%q: out of range %+v", raw, q)
		}
		for _, k := range q.Kinds {
			if !slices.Contains(hub.EventKinds(), k) {
				t.Fatalf("%q: unknown kind %q accepted", raw, k)
			}
		}
		if v, _ := url.ParseQuery(raw); v.Get("since") == "" && !q.Since.IsZero() {
			t.Fatalf("%q: since set without the parameter", raw)
		}
	})
}
