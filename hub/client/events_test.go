package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/internal/webhook"
	"github.com/atelier-ml/atelier/testbench"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
)

// TestEventsEndToEnd runs a real hub with a webhook, connects a simulated
// agent over MQTT and disconnects it: agent_online then agent_offline are
// followed through the API and POSTed, signed, to the webhook.
func TestEventsEndToEnd(t *testing.T) {
	const secret = "hook-secret"
	posted := make(chan hub.Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if got := r.Header.Get(webhook.HeaderSignature); got != webhook.Sign(secret, body) {
			t.Errorf("webhook signature %q does not match the body", got)
		}
		var e hub.Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		posted <- e
	}))
	defer hook.Close()
	cfg := testbench.HubConfig(t)
	cfg.WebhookURL, cfg.WebhookSecret = hook.URL, secret
	h := testbench.StartHub(t, cfg)
	c := client.New(h.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	followed := make(chan hub.Event, 16)
	fctx, stopFollow := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.StreamEvents(fctx, hub.EventQuery{Kinds: []string{hub.EventAgentOnline, hub.EventAgentOffline}}, true, func(e hub.Event) error {
			followed <- e
			return nil
		})
	}()

	fl, err := fleetsim.Start(ctx, fleetsim.Config{Hub: h.URL, Agents: 1, DataDir: t.TempDir(), Name: "ev", Heartbeat: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	id := fl.IDs()[0]
	next := func(ch <-chan hub.Event, what string) hub.Event {
		t.Helper()
		select {
		case e := <-ch:
			return e
		case <-ctx.Done():
			t.Fatalf("no %s event", what)
			return hub.Event{}
		}
	}
	if e := next(followed, "followed online"); e.Kind != hub.EventAgentOnline || e.Agent != id {
		t.Fatalf("followed %+v, want %s online", e, id)
	}
	if e := next(posted, "posted online"); e.Kind != hub.EventAgentOnline || e.Agent != id {
		t.Fatalf("posted %+v, want %s online", e, id)
	}
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	off := next(followed, "followed offline")
	if off.Kind != hub.EventAgentOffline || off.Agent != id {
		t.Fatalf("followed %+v, want %s offline", off, id)
	}
	if e := next(posted, "posted offline"); e.ID != off.ID {
		t.Fatalf("posted %+v, want event %d", e, off.ID)
	}
	stopFollow()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("StreamEvents = %v, want context.Canceled", err)
	}
	// The list, filtered by agent, holds exactly the two transitions.
	evs, err := c.ListEvents(ctx, hub.EventQuery{Agent: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Kind != hub.EventAgentOnline || evs[1].Kind != hub.EventAgentOffline {
		t.Errorf("events of %s = %+v, want online then offline", id, evs)
	}
	if _, err := c.ListEvents(ctx, hub.EventQuery{Kinds: []string{"nonsense"}}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("unknown kind: err = %v, want ErrInvalid", err)
	}
}
