package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

const guard = 30 * time.Second // deadlock guard, not a speed assertion

type authEnv struct {
	b         *Broker
	reg       *Registry
	url       string
	hubSecret string
}

func startAuthBroker(t *testing.T) *authEnv {
	t.Helper()
	reg := NewRegistry()
	hubSecret := NewSecret()
	b, err := New(Config{
		NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: t.TempDir(),
		Name: "auth-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Auth: &AuthConfig{Credentials: reg, HubSecret: hubSecret},
	}, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return &authEnv{b: b, reg: reg, url: "tcp://" + b.MQTTAddr(), hubSecret: hubSecret}
}

// client is a paho client with its received messages and connection loss.
type client struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []mqtt.Message
	got  chan struct{} // signalled on every message
	lost chan error
}

func (cl *client) handler(_ mqtt.Client, m mqtt.Message) {
	cl.mu.Lock()
	cl.msgs = append(cl.msgs, m)
	cl.mu.Unlock()
	select {
	case cl.got <- struct{}{}:
	default:
	}
}

func (cl *client) messages() []mqtt.Message {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]mqtt.Message(nil), cl.msgs...)
}

// waitFor waits until a message on topic with payload has arrived and
// returns everything received so far.
func (cl *client) waitFor(t *testing.T, topic, payload string) []mqtt.Message {
	t.Helper()
	deadline := time.After(guard)
	for {
		ms := cl.messages()
		for _, m := range ms {
			if m.Topic() == topic && string(m.Payload()) == payload {
				return ms
			}
		}
		select {
		case <-cl.got:
		case <-deadline:
			t.Fatalf("no %q on %s; received %d messages", payload, topic, len(ms))
		}
	}
}

func dial(url, clientID, user, pass string) (*client, error) {
	cl := &client{got: make(chan struct{}, 1), lost: make(chan error, 1)}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(cl.handler).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case cl.lost <- err:
			default:
			}
		})
	cl.c = mqtt.NewClient(opts)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(guard) {
		return nil, fmt.Errorf("connect %s: no answer", clientID)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return cl, nil
}

func mustDial(t *testing.T, url, clientID, user, pass string) *client {
	t.Helper()
	cl, err := dial(url, clientID, user, pass)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", clientID, user, err)
	}
	t.Cleanup(func() { cl.c.Disconnect(50) })
	return cl
}

// subscribe returns the granted QoS (0x80 = refused).
func (cl *client) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	tok := cl.c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*mqtt.SubscribeToken).Result()[filter]
}

func (cl *client) publish(t *testing.T, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	tok := cl.c.Publish(topic, qos, retained, []byte(payload))
	if !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (e *authEnv) hub(t *testing.T, id string) *client {
	t.Helper()
	return mustDial(t, e.url, id, HubUser, e.hubSecret)
}

func (e *authEnv) agent(t *testing.T, id string) *client {
	t.Helper()
	secret, err := e.reg.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return mustDial(t, e.url, id, id, secret)
}

const refused = 0x80

// TestAgentOwnTopics: an agent subscribes at QoS 1 to its desired state and
// chunk responses, receives the hub's retained desired state, and publishes
// QoS 1 reports and a retained presence the hub receives.
func TestAgentOwnTopics(t *testing.T) {
	e := startAuthBroker(t)
	hub := e.hub(t, "hub")
	for _, leaf := range []string{topics.Reported, topics.Presence, topics.Telemetry, topics.ChunksRequest} {
		if q := hub.subscribe(t, topics.All(leaf), 1); q != 1 {
			t.Fatalf("hub subscribe %s: granted %#x", leaf, q)
		}
	}
	hub.publish(t, topics.Topic("a", topics.Desired), 1, true, "desired-1")

	a := e.agent(t, "a")
	for _, leaf := range []string{topics.Desired, topics.ChunksResponse} {
		if q := a.subscribe(t, topics.Topic("a", leaf), 1); q != 1 {
			t.Fatalf("agent subscribe %s: granted %#x, want 1", leaf, q)
		}
	}
	ms := a.waitFor(t, topics.Topic("a", topics.Desired), "desired-1")
	if !ms[len(ms)-1].Retained() || ms[len(ms)-1].Qos() != 1 {
		t.Errorf("desired: retained %v qos %d, want retained at QoS 1", ms[len(ms)-1].Retained(), ms[len(ms)-1].Qos())
	}
	hub.publish(t, topics.Topic("a", topics.ChunksResponse), 1, false, "chunk-0")
	a.waitFor(t, topics.Topic("a", topics.ChunksResponse), "chunk-0")

	for _, leaf := range []string{topics.Reported, topics.Telemetry, topics.ChunksRequest} {
		a.publish(t, topics.Topic("a", leaf), 1, false, "from-a-"+leaf)
		hub.waitFor(t, topics.Topic("a", leaf), "from-a-"+leaf)
	}
	a.publish(t, topics.Topic("a", topics.Presence), 1, true, "online")
	hub.waitFor(t, topics.Topic("a", topics.Presence), "online")
	// The presence was stored retained: a new hub subscriber gets it.
	probe := e.hub(t, "probe")
	probe.subscribe(t, topics.All(topics.Presence), 1)
	ms = probe.waitFor(t, topics.Topic("a", topics.Presence), "online")
	if !ms[0].Retained() {
		t.Error("presence not delivered as retained to a new subscriber")
	}
}

// TestAgentCannotTouchOthers: agent a can neither subscribe to agent b's
// topics (SUBACK 0x80, nothing delivered) nor publish on them (the broker
// acknowledges the QoS 1 PUBLISH, as MQTT 3.1.1 requires, drops it and
// keeps the connection), not even to overwrite b's retained desired state.
func TestAgentCannotTouchOthers(t *testing.T) {
	e := startAuthBroker(t)
	hub := e.hub(t, "hub")
	hub.subscribe(t, topics.All(topics.Reported), 1)
	hub.subscribe(t, topics.All(topics.ChunksRequest), 1)
	hub.publish(t, topics.Topic("b", topics.Desired), 1, true, "b-secret")

	a := e.agent(t, "a")
	for _, f := range []string{
		topics.Topic("b", topics.Desired), topics.Topic("b", topics.ChunksResponse),
		topics.All(topics.Desired), "atelier/v1/agents/#", "#", "atelier/v1/agents/a/#",
		topics.Topic("a", topics.Reported), // its own, but publish-only
		"$MQTT/msgs/#", "$MQTT/rmsgs/#",
	} {
		if q := a.subscribe(t, f, 1); q != refused {
			t.Errorf("agent a subscribe %s: granted %#x, want %#x", f, q, refused)
		}
	}
	// Publishes on b's topics (and the hub's) are acknowledged and dropped.
	a.publish(t, topics.Topic("b", topics.Reported), 1, false, "forged-report")
	a.publish(t, topics.Topic("b", topics.ChunksRequest), 0, false, "forged-request")
	a.publish(t, topics.Topic("b", topics.Desired), 1, true, "forged-desired")
	a.publish(t, topics.Topic("a", topics.Desired), 1, true, "self-desired")
	// Barrier: a's own report is published after the forged ones on the
	// same connection, so once the hub has it, the forged ones would have
	// arrived before it.
	a.publish(t, topics.Topic("a", topics.Reported), 1, false, "barrier")
	ms := hub.waitFor(t, topics.Topic("a", topics.Reported), "barrier")
	for _, m := range ms {
		if m.Topic() != topics.Topic("a", topics.Reported) {
			t.Errorf("hub received %s %q from agent a", m.Topic(), m.Payload())
		}
	}
	select {
	case err := <-a.lost:
		t.Fatalf("agent a was disconnected for a denied publish: %v", err)
	default:
	}
	if !a.c.IsConnectionOpen() {
		t.Fatal("agent a's connection closed after denied publishes")
	}

	// b still gets the hub's retained desired state, not a's forgery, and
	// a's attempt to set its own desired state was not stored either.
	b := e.agent(t, "b")
	b.subscribe(t, topics.Topic("b", topics.Desired), 1)
	hub.publish(t, topics.Topic("b", topics.Desired), 1, false, "b-marker")
	ms = b.waitFor(t, topics.Topic("b", topics.Desired), "b-marker")
	if len(ms) != 2 || string(ms[0].Payload()) != "b-secret" {
		var got []string
		for _, m := range ms {
			got = append(got, string(m.Payload()))
		}
		t.Errorf("agent b received %q, want [b-secret b-marker]", got)
	}
	probe := e.hub(t, "probe")
	probe.subscribe(t, topics.Topic("a", topics.Desired), 1)
	hub.publish(t, topics.Topic("a", topics.Desired), 1, false, "a-marker")
	ms = probe.waitFor(t, topics.Topic("a", topics.Desired), "a-marker")
	if len(ms) != 1 {
		t.Errorf("a's self-published desired state was stored: probe received %d messages", len(ms))
	}
	if got := a.messages(); len(got) != 0 {
		t.Errorf("agent a received %d messages from refused subscriptions, first on %s", len(got), got[0].Topic())
	}
}

func TestAuthRefusals(t *testing.T) {
	e := startAuthBroker(t)
	secret, err := e.reg.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.reg.Issue("b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, clientID, user, pass string
	}{
		{"wrong password", "a", "a", secret + "x"},
		{"another agent's password", "a", "a", other},
		{"empty password", "a", "a", ""},
		{"unknown agent", "c", "c", secret},
		{"no user", "a", "", secret},
		{"invalid agent id", "A", "A", secret},
		{"client id is not the agent id", "b", "a", secret},
		{"hub user, wrong secret", "hub", HubUser, secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := dial(e.url, tc.clientID, tc.user, tc.pass)
			if err == nil {
				cl.c.Disconnect(0)
				t.Fatal("connected")
			}
			if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
				t.Fatalf("err = %v, want %v", err, packets.ErrorRefusedNotAuthorised)
			}
		})
	}
	mustDial(t, e.url, "a", "a", secret) // the right one still works
}

// TestRevokeDisconnectsAndRefuses: revoking the credential and
// disconnecting the agent ends its connection at once (its last will is
// published) and refuses its reconnect.
func TestRevokeDisconnectsAndRefuses(t *testing.T) {
	e := startAuthBroker(t)
	hub := e.hub(t, "hub")
	hub.subscribe(t, topics.All(topics.Presence), 1)
	secret, err := e.reg.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{got: make(chan struct{}, 1), lost: make(chan error, 1)}
	opts := mqtt.NewClientOptions().AddBroker(e.url).SetClientID("a").SetUsername("a").SetPassword(secret).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).
		SetWill(topics.Topic("a", topics.Presence), "offline", 1, true).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { cl.lost <- err })
	cl.c = mqtt.NewClient(opts)
	if tok := cl.c.Connect(); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if q := cl.subscribe(t, topics.Topic("a", topics.Desired), 1); q != 1 {
		t.Fatalf("subscribe: %#x", q)
	}

	if !e.reg.Revoke("a") {
		t.Fatal("Revoke found no credential")
	}
	n, err := e.b.DisconnectAgent("a")
	if err != nil || n != 1 {
		t.Fatalf("DisconnectAgent = %d, %v; want 1 connection", n, err)
	}
	select {
	case <-cl.lost:
	case <-time.After(guard):
		t.Fatal("revoked agent still connected")
	}
	hub.waitFor(t, topics.Topic("a", topics.Presence), "offline")
	if _, err := dial(e.url, "a", "a", secret); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("reconnect after revocation: %v, want %v", err, packets.ErrorRefusedNotAuthorised)
	}
	if n, err := e.b.DisconnectAgent("a"); n != 0 || err != nil {
		t.Errorf("second DisconnectAgent = %d, %v", n, err)
	}
	if _, err := e.b.DisconnectAgent("A/b"); !errors.Is(err, ErrInvalidAgentID) {
		t.Errorf("DisconnectAgent(invalid) = %v", err)
	}
	// A new credential works again.
	secret2, err := e.reg.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	mustDial(t, e.url, "a", "a", secret2)
}

func TestRegistryAndConfig(t *testing.T) {
	r := NewRegistry()
	if _, err := r.Issue("Bad"); !errors.Is(err, ErrInvalidAgentID) {
		t.Errorf("Issue(Bad) = %v", err)
	}
	s1, _ := r.Issue("x")
	s2, _ := r.Issue("x") // replaces
	if len(s1) != 43 || s1 == s2 {
		t.Errorf("secrets %q %q: want two distinct 43-character tokens", s1, s2)
	}
	for _, tc := range []struct {
		id, secret string
		want       bool
	}{{"x", s2, true}, {"x", s1, false}, {"y", s2, false}, {"x", "", false}} {
		if ok, err := r.Verify(context.Background(), tc.id, tc.secret); ok != tc.want || err != nil {
			t.Errorf("Verify(%s, …) = %v, %v; want %v", tc.id, ok, err, tc.want)
		}
	}
	if r.Revoke("y") || !r.Revoke("x") {
		t.Error("Revoke results wrong")
	}
	if ok, _ := r.Verify(context.Background(), "x", s2); ok {
		t.Error("revoked credential verifies")
	}
	for _, ac := range []AuthConfig{{HubSecret: NewSecret()}, {Credentials: r, HubSecret: "short"}} {
		_, err := New(Config{NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: t.TempDir(), Auth: &ac}, slog.New(slog.DiscardHandler))
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New with %+v: %v, want ErrInvalidConfig", ac, err)
		}
	}
	p := AgentPermissions("e-1")
	want := "[atelier.v1.agents.e-1.reported atelier.v1.agents.e-1.presence atelier.v1.agents.e-1.telemetry atelier.v1.agents.e-1.chunks.request] [atelier.v1.agents.e-1.desired atelier.v1.agents.e-1.chunks.response atelier.v1.agents.e-1.telemetry.ack]"
	if got := fmt.Sprint(p.Publish.Allow, " ", p.Subscribe.Allow); got != want {
		t.Errorf("AgentPermissions = %s\nwant %s", got, want)
	}
	if p.Publish.Deny != nil || p.Subscribe.Deny != nil {
		t.Error("unexpected deny lists")
	}
}
