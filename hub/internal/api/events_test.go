package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
)

// eventEnv is an API over a real store the test writes events to.
func eventEnv(t *testing.T) (*sqlite.Store, *api.API, string) {
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
	a := api.New(api.Config{}, st, bl, log)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(a.Close)
	return st, a, srv.URL
}

func getEvents(t *testing.T, url string) (int, []hub.Event, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, string(body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	var out []hub.Event
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		if line == "" {
			continue
		}
		var e hub.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return 200, out, ""
}

func TestEventsList(t *testing.T) {
	st, _, base := eventEnv(t)
	ctx := context.Background()
	old := time.Now().Add(-3 * time.Hour)
	for _, e := range []hub.Event{
		{Time: old, Kind: hub.EventAgentOnline, Agent: "a1"},
		{Kind: hub.EventDeploymentFailed, Agent: "a1", Deployment: "d", Message: "boom"},
		{Kind: hub.EventAgentOffline, Agent: "a2"},
		{Kind: hub.EventDriftDetected, Deployment: "d"},
	} {
		if _, err := st.AddEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		query string
		ids   []int64
	}{
		{"", []int64{1, 2, 3, 4}},
		{"?after=2", []int64{3, 4}},
		{"?kind=agent_online,agent_offline", []int64{1, 3}},
		{"?kind=agent_offline&kind=drift_detected", []int64{3, 4}},
		{"?agent=a1", []int64{1, 2}},
		{"?deployment=d&kind=deployment_failed", []int64{2}},
		{"?since=1h", []int64{2, 3, 4}},
		{"?since=" + old.Add(-time.Minute).UTC().Format(time.RFC3339), []int64{1, 2, 3, 4}},
		{"?limit=2&after=1", []int64{2, 3}},
	} {
		code, evs, body := getEvents(t, base+"/api/v1/events"+tc.query)
		if code != 200 {
			t.Errorf("%s: %d %s", tc.query, code, body)
			continue
		}
		var ids []int64
		for _, e := range evs {
			ids = append(ids, e.ID)
		}
		if len(ids) != len(tc.ids) || !slicesEqual(ids, tc.ids) {
			t.Errorf("%s: ids %v, want %v", tc.query, ids, tc.ids)
		}
	}
	for _, tc := range []struct{ query, want string }{
		{"?after=x", `query parameter after=\"x\": expected an event id`},
		{"?kind=agent_exploded", `kind=\"agent_exploded\": expected one of agent_online`},
		{"?since=yesterday", `since=\"yesterday\": expected an RFC 3339 time or a duration`},
		{"?limit=0", `limit=\"0\": expected 1 to 10000`},
		{"?follow=maybe", `follow=\"maybe\": expected true or false`},
	} {
		code, _, body := getEvents(t, base+"/api/v1/events"+tc.query)
		if code != 400 || !strings.Contains(body, tc.want) || !strings.Contains(body, `"invalid"`) {
			t.Errorf("%s: %d %s, want 400 invalid naming %s", tc.query, code, body, tc.want)
		}
	}
}

func slicesEqual(a, b []int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func TestEventsFollow(t *testing.T) {
	st, a, base := eventEnv(t)
	ctx := context.Background()
	if _, err := st.AddEvent(ctx, hub.Event{Kind: hub.EventAgentOnline, Agent: "a1"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/api/v1/events?follow=true&agent=a1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	next := func() hub.Event {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended early: %v", sc.Err())
		}
		var e hub.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := next(); e.ID != 1 || e.Kind != hub.EventAgentOnline {
		t.Errorf("first = %+v", e)
	}
	// Recorded while following (not through the API): an event of another
	// agent is filtered out, the next one of a1 arrives.
	if _, err := st.AddEvent(ctx, hub.Event{Kind: hub.EventAgentOnline, Agent: "a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddEvent(ctx, hub.Event{Kind: hub.EventAgentOffline, Agent: "a1", Message: "gone"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.ID != 3 || e.Kind != hub.EventAgentOffline || e.Message != "gone" {
		t.Errorf("live = %+v", e)
	}
	a.Close()
	if sc.Scan() {
		t.Errorf("stream went on after Close: %q", sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Errorf("stream did not end cleanly: %v", err)
	}
}
