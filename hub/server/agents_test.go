package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// post sends JSON to the hub and decodes the answer, which must have status
// want.
func post(t *testing.T, base, path string, body, out any, want int) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode != want {
		t.Fatalf("POST %s = %d %s, want %d", path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: %s: %v", path, raw, err)
		}
	}
}

func getAgent(t *testing.T, base, id string) hub.Agent {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/agents/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a hub.Agent
	if resp.StatusCode != 200 {
		t.Fatalf("GET agent %s: %d", id, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitState polls the agent until it is in state want (at most 30 s: the
// hub records presence asynchronously).
func waitState(t *testing.T, base, id string, want hub.AgentState) hub.Agent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := getAgent(t, base, id)
		if a.State == want {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s is %s, want %s", id, a.State, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testAgent is a real paho client speaking as an enrolled agent, whose TCP
// connection the test can cut (so the broker sees an abrupt loss).
type testAgent struct {
	c    mqtt.Client
	mu   sync.Mutex
	conn net.Conn
	lost chan error
}

func dialAgent(t *testing.T, en hub.Enrollment) (*testAgent, error) {
	t.Helper()
	ta := &testAgent{lost: make(chan error, 1)}
	will, _ := proto.Marshal(&agentv1.Presence{Status: agentv1.Presence_STATUS_OFFLINE})
	opts := mqtt.NewClientOptions().AddBroker(en.MQTTURL).SetClientID(en.AgentID).
		SetUsername(en.AgentID).SetPassword(en.Secret).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(10*time.Second).SetCleanSession(true).
		SetBinaryWill(topics.Topic(en.AgentID, topics.Presence), will, 1, true).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", u.Host)
			ta.mu.Lock()
			ta.conn = c
			ta.mu.Unlock()
			return c, err
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { ta.lost <- err })
	ta.c = mqtt.NewClient(opts)
	tok := ta.c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { ta.c.Disconnect(0) })
	return ta, nil
}

func (ta *testAgent) publish(t *testing.T, topic string, retained bool, m proto.Message) {
	t.Helper()
	b, _ := proto.Marshal(m)
	if tok := ta.c.Publish(topic, 1, retained, b); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// cut closes the TCP connection without an MQTT DISCONNECT.
func (ta *testAgent) cut() {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.conn.Close()
}

var testCaps = &agentv1.Capabilities{Kind: "edge", Os: "linux", Arch: "arm64", Cpus: 4, MemoryBytes: 8 << 30, OnnxruntimeVersion: "1.22.0", AgentVersion: "0.1.0"}

func enrollTestAgent(t *testing.T, base, name string) hub.Enrollment {
	t.Helper()
	var tok hub.JoinToken
	post(t, base, "/api/v1/agents/tokens", map[string]any{"labels": map[string]string{"site": "lab"}}, &tok, 201)
	var en hub.Enrollment
	post(t, base, "/api/v1/agents/enroll", hub.EnrollRequest{Token: tok.Token, Name: name, Capabilities: hub.Capabilities{Kind: "edge", OS: "linux", Arch: "arm64"}}, &en, 201)
	return en
}

// TestAgentLifecycle: enroll over REST, connect to the MQTT URL with the
// credential, ONLINE presence shows in the API with its capabilities, an
// abrupt disconnect (last will) makes it offline, revocation closes a live
// connection at once and every later CONNECT is refused.
func TestAgentLifecycle(t *testing.T) {
	s, _ := startHub(t, nil)
	base := "http://" + s.Addrs().HTTP
	en := enrollTestAgent(t, base, "edge-1")
	if en.MQTTURL != "tcp://"+s.Addrs().MQTT {
		t.Errorf("mqtt_url %q, want tcp://%s", en.MQTTURL, s.Addrs().MQTT)
	}
	if a := getAgent(t, base, en.AgentID); a.State != hub.AgentOffline || a.LastSeen != nil {
		t.Fatalf("before connecting: %+v", a)
	}

	// A wrong secret and another client id are refused.
	bad := en
	bad.Secret += "x"
	if _, err := dialAgent(t, bad); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Errorf("wrong secret: %v", err)
	}

	ta, err := dialAgent(t, en)
	if err != nil {
		t.Fatal(err)
	}
	ta.publish(t, topics.Topic(en.AgentID, topics.Presence), true,
		&agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE, Capabilities: testCaps, HeartbeatSeconds: 10})
	a := waitState(t, base, en.AgentID, hub.AgentOnline)
	if a.Capabilities.OS != "linux" || a.Capabilities.CPUs != 4 || a.Capabilities.ONNXRuntimeVersion != "1.22.0" || a.LastSeen == nil {
		t.Errorf("online agent: %+v", a)
	}
	ta.publish(t, topics.Topic(en.AgentID, topics.Reported), false, &agentv1.ReportedState{ObservedGeneration: 0, Endpoint: "http://127.0.0.1:8000"})
	deadline := time.Now().Add(30 * time.Second)
	for getAgent(t, base, en.AgentID).Endpoint != "http://127.0.0.1:8000" {
		if time.Now().After(deadline) {
			t.Fatal("report not recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Abrupt loss: the broker publishes the last will.
	ta.cut()
	waitState(t, base, en.AgentID, hub.AgentOffline)

	// Back online, then revoked while connected.
	ta, err = dialAgent(t, en)
	if err != nil {
		t.Fatal(err)
	}
	ta.publish(t, topics.Topic(en.AgentID, topics.Presence), true, &agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE, Capabilities: testCaps})
	waitState(t, base, en.AgentID, hub.AgentOnline)
	var r hub.Agent
	post(t, base, "/api/v1/agents/"+en.AgentID+"/revoke", nil, &r, 200)
	if r.State != hub.AgentRevoked {
		t.Errorf("revoke answered %+v", r)
	}
	select {
	case <-ta.lost:
	case <-time.After(30 * time.Second):
		t.Fatal("revoked agent still connected")
	}
	if _, err := dialAgent(t, en); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Errorf("reconnect after revoke: %v, want not Authorized", err)
	}
	if a := getAgent(t, base, en.AgentID); a.State != hub.AgentRevoked {
		t.Errorf("after revoke and last will: %s", a.State)
	}
}

// TestAgentMissedHeartbeats: an agent that stays connected but silent is
// marked offline after three heartbeat intervals (1 s here) plus at most
// one sweep (1 s).
func TestAgentMissedHeartbeats(t *testing.T) {
	s, _ := startHub(t, nil)
	base := "http://" + s.Addrs().HTTP
	en := enrollTestAgent(t, base, "quiet")
	ta, err := dialAgent(t, en)
	if err != nil {
		t.Fatal(err)
	}
	ta.publish(t, topics.Topic(en.AgentID, topics.Presence), true,
		&agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE, Capabilities: testCaps, HeartbeatSeconds: 1})
	waitState(t, base, en.AgentID, hub.AgentOnline)
	waitState(t, base, en.AgentID, hub.AgentOffline)
	if !ta.c.IsConnectionOpen() {
		t.Error("the agent's connection closed: offline must come from the sweeper")
	}
}

// TestAgentCredentialSurvivesRestart: credentials live in the store, so an
// agent enrolled before a hub restart connects after it (and a revoked one
// stays refused); advertise_mqtt is what enrollment hands out.
func TestAgentCredentialSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	run := func(advertise string) (*Server, func()) {
		cfg := DefaultConfig()
		cfg.Data = data
		cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.AdvertiseMQTT = advertise
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-s.Ready():
		case err := <-done:
			cancel()
			t.Fatalf("Run: %v", err)
		}
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	s, stop := run("agents.example:18830")
	base := "http://" + s.Addrs().HTTP
	keep := enrollTestAgent(t, base, "keep")
	gone := enrollTestAgent(t, base, "gone")
	if keep.MQTTURL != "tcp://agents.example:18830" {
		t.Errorf("mqtt_url %q, want the advertised address", keep.MQTTURL)
	}
	post(t, base, "/api/v1/agents/"+gone.AgentID+"/revoke", nil, nil, 200)
	stop()

	s, stop = run("")
	defer stop()
	keep.MQTTURL = "tcp://" + s.Addrs().MQTT
	gone.MQTTURL = keep.MQTTURL
	ta, err := dialAgent(t, keep)
	if err != nil {
		t.Fatalf("enrolled agent after restart: %v", err)
	}
	ta.publish(t, topics.Topic(keep.AgentID, topics.Presence), true, &agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE, Capabilities: testCaps})
	waitState(t, "http://"+s.Addrs().HTTP, keep.AgentID, hub.AgentOnline)
	if _, err := dialAgent(t, gone); err == nil {
		t.Error("revoked agent connected after restart")
	}
}

func TestAdvertiseMQTTValidation(t *testing.T) {
	for _, bad := range []string{"nohost", ":1883", "h:0", "h:x"} {
		cfg := DefaultConfig()
		cfg.AdvertiseMQTT = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "advertise_mqtt") {
			t.Errorf("advertise_mqtt %q: %v", bad, err)
		}
	}
	cfg := DefaultConfig()
	cfg.AdvertiseMQTT = "10.0.0.1:1883"
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestCapsFromKeepsTheFPGACard(t *testing.T) {
	c := capsFrom(&agentv1.Capabilities{Kind: "fpga", Fpga: &agentv1.FPGADevice{Name: "emu", ArrayRows: 32, ArrayCols: 32, ClockMhz: 250, MemoryBytes: 1 << 28, Firmware: "fw-2"}})
	want := hub.FPGADevice{Name: "emu", ArrayRows: 32, ArrayCols: 32, ClockMHz: 250, MemoryBytes: 1 << 28, Firmware: "fw-2"}
	if c.FPGA == nil || *c.FPGA != want {
		t.Fatalf("FPGA = %+v, want %+v", c.FPGA, want)
	}
	if c := capsFrom(&agentv1.Capabilities{Kind: "edge"}); c.FPGA != nil {
		t.Fatalf("edge agent got a card: %+v", c.FPGA)
	}
}
