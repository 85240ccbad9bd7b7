package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// TestAgentOverNATS: the same credential and permissions hold for an agent
// speaking the NATS protocol: its own subjects work, anything else
// (another agent's subjects, the JetStream API) is a permissions violation,
// and a wrong secret is refused.
func TestAgentOverNATS(t *testing.T) {
	e := startAuthBroker(t)
	secret, err := e.reg.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(e.b.ClientURL(), nats.UserInfo("a", "wrong")); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong secret")
	} else if !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("wrong secret: %v, want an authorization violation", err)
	}

	errs := make(chan error, 16)
	nc, err := nats.Connect(e.b.ClientURL(), nats.UserInfo("a", secret),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hub, err := nats.Connect(e.b.ClientURL(), nats.UserInfo(HubUser, e.hubSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()

	own, err := nc.SubscribeSync(topics.Subject("a", topics.Desired))
	if err != nil {
		t.Fatal(err)
	}
	reports, err := hub.SubscribeSync("atelier.v1.agents.*.reported")
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := hub.Publish(topics.Subject("a", topics.Desired), []byte("d")); err != nil {
		t.Fatal(err)
	}
	if m, err := own.NextMsg(guard); err != nil || string(m.Data) != "d" {
		t.Fatalf("own desired: %v %v", m, err)
	}

	expectViolation := func(what string) {
		t.Helper()
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Fatalf("%s: %v, want a permissions violation", what, err)
			}
		case <-time.After(guard):
			t.Fatalf("%s: no permissions violation reported", what)
		}
	}
	if _, err := nc.SubscribeSync(topics.Subject("b", topics.Desired)); err != nil {
		t.Fatal(err)
	}
	expectViolation("subscribe to b's desired state")
	if err := nc.Publish(topics.Subject("b", topics.Reported), []byte("forged")); err != nil {
		t.Fatal(err)
	}
	expectViolation("publish on b's reported")
	if err := nc.Publish("$JS.API.INFO", nil); err != nil {
		t.Fatal(err)
	}
	expectViolation("publish to the JetStream API")
	if err := nc.Publish(topics.Subject("a", topics.Reported), []byte("mine")); err != nil {
		t.Fatal(err)
	}
	m, err := reports.NextMsg(guard)
	if err != nil || m.Subject != topics.Subject("a", topics.Reported) || string(m.Data) != "mine" {
		t.Fatalf("hub received %v (%v), want only a's own report", m, err)
	}
}
