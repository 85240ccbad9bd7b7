// Package testhub holds test fixtures for the agent's packages: the real
// embedded NATS server with its MQTT listener, and a paho client playing the
// hub's side of the agent protocol (publishing desired state, answering
// chunk requests from byte slices, collecting reported state and presence).
//
// It is for tests only. It is not the hub's implementation of the protocol,
// which lives in hub/ and is still to be written.
package testhub

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Credentials every MQTT client of a test Broker must present.
const (
	Username = "atelier"
	Password = "test-secret"
)

// Broker is an embedded NATS server with JetStream and the MQTT listener on
// 127.0.0.1. Stop and Restart keep the port and the store directory, so
// retained messages and persistent sessions survive a restart.
type Broker struct {
	t    testing.TB
	opts *server.Options
	srv  *server.Server
	// URL is the MQTT URL, tcp://127.0.0.1:port.
	URL string
}

// StartBroker starts a broker; it is shut down by t.Cleanup.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	o := &server.Options{
		ServerName: "testhub-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	o.MQTT.Host = "127.0.0.1"
	o.MQTT.Port = -1
	o.MQTT.Username = Username
	o.MQTT.Password = Password
	b := &Broker{t: t, opts: o}
	b.start()
	b.URL = fmt.Sprintf("tcp://127.0.0.1:%d", o.MQTT.Port)
	t.Cleanup(b.Stop)
	return b
}

func (b *Broker) start() {
	b.t.Helper()
	s, err := server.NewServer(b.opts)
	if err != nil {
		b.t.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		b.t.Fatal("nats server not ready after 10s")
	}
	b.srv = s
}

// Stop shuts the broker down (idempotent).
func (b *Broker) Stop() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}

// Restart starts a stopped broker again on the same port and store.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Tamper may rewrite or drop the chunk the hub is about to send; returning
// drop=true sends nothing for that index.
type Tamper func(sha string, index uint32, data []byte) (out []byte, drop bool)

// Hub plays the hub's side of the protocol for tests. Its methods are safe
// for concurrent use. Like the real hub should, it publishes the desired
// state again when the agent reports an older generation (the NATS MQTT
// listener can miss a retained message for a subscription made right after
// the publication).
type Hub struct {
	t      testing.TB
	client mqtt.Client
	work   chan *agentv1.ChunkRequest
	agent  string

	mu       sync.Mutex
	blobs    map[string][]byte
	chunk    map[string]uint32
	requests []*agentv1.ChunkRequest
	served   []uint32
	tamper   Tamper
	reported []*agentv1.ReportedState
	presence []*agentv1.Presence
	changed  chan struct{}
	// desired is the last state published retained; republished tracks
	// how often it was sent again to an agent reporting an older one.
	desired     []byte
	desiredGen  uint64
	republished map[[2]uint64]int
}

// MaxChunksPerRequest caps ChunkRequest.count as the hub does.
const MaxChunksPerRequest = 16

// NewHub connects a hub client for agent to the broker at url. It is
// disconnected by t.Cleanup.
func NewHub(t testing.TB, url, agent string) *Hub {
	t.Helper()
	subscribed := make(chan error, 1)
	h := &Hub{t: t, agent: agent, work: make(chan *agentv1.ChunkRequest, 1024),
		blobs: map[string][]byte{}, chunk: map[string]uint32{}, changed: make(chan struct{}),
		republished: map[[2]uint64]int{}}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("testhub-" + agent).
		SetUsername(Username).SetPassword(Password).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Subscribe on every (re)connect (idempotent with a persistent session).
			tok := c.SubscribeMultiple(map[string]byte{
				topic(agent, topics.ChunksRequest): 1,
				topic(agent, topics.Reported):      1,
				topic(agent, topics.Presence):      1,
			}, h.onMessage)
			go func() {
				tok.WaitTimeout(10 * time.Second)
				select {
				case subscribed <- tok.Error():
				default:
				}
			}()
		})
	h.client = mqtt.NewClient(opts)
	if tok := h.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("hub connect: %v", tok.Error())
	}
	// Wait for the subscriptions: a retained message published while a
	// subscription is being set up can be missed by the broker.
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("hub subscribe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hub subscribe: no answer after 10s")
	}
	done := make(chan struct{})
	go h.serve(done)
	t.Cleanup(func() {
		close(h.work)
		<-done
		h.client.Disconnect(100)
	})
	return h
}

func topic(agent, leaf string) string { return topics.Topic(agent, leaf) }

func (h *Hub) signalLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Hub) onMessage(_ mqtt.Client, m mqtt.Message) {
	switch {
	case strings.HasSuffix(m.Topic(), "/chunks/request"):
		var r agentv1.ChunkRequest
		if err := proto.Unmarshal(m.Payload(), &r); err != nil {
			h.t.Errorf("hub: bad chunk request: %v", err)
			return
		}
		h.mu.Lock()
		h.requests = append(h.requests, &r)
		h.mu.Unlock()
		h.work <- &r
	case strings.HasSuffix(m.Topic(), "/reported"):
		var r agentv1.ReportedState
		if err := proto.Unmarshal(m.Payload(), &r); err != nil {
			h.t.Errorf("hub: bad reported state: %v", err)
			return
		}
		h.mu.Lock()
		h.reported = append(h.reported, &r)
		h.signalLocked()
		// The broker can miss a retained message for a subscription made
		// just after it was published; like the real hub, send the
		// desired state again to an agent reporting an older generation.
		var again []byte
		if key := [2]uint64{r.ObservedGeneration, h.desiredGen}; r.ObservedGeneration < h.desiredGen && h.republished[key] < 3 {
			h.republished[key]++
			again = h.desired
		}
		h.mu.Unlock()
		if again != nil {
			h.client.Publish(topic(h.agent, topics.Desired), 1, true, again) // not awaited: paho handler
		}
	case strings.HasSuffix(m.Topic(), "/presence"):
		var p agentv1.Presence
		if err := proto.Unmarshal(m.Payload(), &p); err != nil {
			h.t.Errorf("hub: bad presence: %v", err)
			return
		}
		h.mu.Lock()
		h.presence = append(h.presence, &p)
		h.signalLocked()
		h.mu.Unlock()
	}
}

// serve answers chunk requests in order, off the paho delivery goroutine.
func (h *Hub) serve(done chan struct{}) {
	defer close(done)
	for r := range h.work {
		h.mu.Lock()
		blob, ok := h.blobs[r.Sha256]
		cs := h.chunk[r.Sha256]
		tamper := h.tamper
		h.mu.Unlock()
		count := min(r.Count, MaxChunksPerRequest)
		var toks []mqtt.Token
		for i := r.Index; i < r.Index+count; i++ {
			resp := &agentv1.ChunkResponse{CorrelationId: r.CorrelationId, Sha256: r.Sha256, Index: i}
			if !ok {
				resp.Error = fmt.Sprintf("unknown blob %s", r.Sha256)
			} else {
				off := uint64(i) * uint64(cs)
				if off >= uint64(len(blob)) && !(off == 0 && len(blob) == 0) {
					if i == r.Index {
						resp.Error = fmt.Sprintf("chunk index %d out of range", i)
					} else {
						break
					}
				} else {
					resp.Data = blob[off:min(off+uint64(cs), uint64(len(blob)))]
				}
			}
			if tamper != nil && resp.Error == "" {
				data, drop := tamper(r.Sha256, i, resp.Data)
				if drop {
					continue
				}
				resp.Data = data
			}
			b, _ := proto.Marshal(resp)
			toks = append(toks, h.client.Publish(topic(h.agent, topics.ChunksResponse), 1, false, b))
			h.mu.Lock()
			h.served = append(h.served, i)
			h.mu.Unlock()
		}
		for _, tok := range toks {
			tok.WaitTimeout(10 * time.Second)
		}
	}
}

// AddModel stores data as a blob served in chunks of chunkSize and returns
// its ModelRef.
func (h *Hub) AddModel(name string, version uint32, data []byte, chunkSize uint32) *agentv1.ModelRef {
	ref := Ref(name, version, data, chunkSize)
	h.mu.Lock()
	h.blobs[ref.Sha256] = data
	h.chunk[ref.Sha256] = chunkSize
	h.mu.Unlock()
	return ref
}

// Ref builds the ModelRef of data cut in chunks of chunkSize.
func Ref(name string, version uint32, data []byte, chunkSize uint32) *agentv1.ModelRef {
	sum := sha256.Sum256(data)
	ref := &agentv1.ModelRef{Name: name, Version: version, Sha256: hex.EncodeToString(sum[:]),
		Size: uint64(len(data)), ChunkSize: chunkSize}
	for off := 0; off < len(data); off += int(chunkSize) {
		s := sha256.Sum256(data[off:min(off+int(chunkSize), len(data))])
		ref.ChunkSha256 = append(ref.ChunkSha256, hex.EncodeToString(s[:]))
	}
	return ref
}

// SetTamper installs (or with nil removes) a Tamper.
func (h *Hub) SetTamper(f Tamper) {
	h.mu.Lock()
	h.tamper = f
	h.mu.Unlock()
}

// PublishDesired publishes d retained on the agent's desired topic.
func (h *Hub) PublishDesired(d *agentv1.DesiredState) {
	h.t.Helper()
	b, err := proto.Marshal(d)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.desired, h.desiredGen = b, d.GetGeneration()
	h.mu.Unlock()
	h.PublishRaw("desired", b, true)
}

// PublishRaw publishes payload on the agent's leaf topic.
func (h *Hub) PublishRaw(leaf string, payload []byte, retained bool) {
	h.t.Helper()
	tok := h.client.Publish(topic(h.agent, leaf), 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		h.t.Fatalf("hub publish %s: %v", leaf, tok.Error())
	}
}

// Requests returns every chunk request received so far.
func (h *Hub) Requests() []*agentv1.ChunkRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*agentv1.ChunkRequest(nil), h.requests...)
}

// Served returns the index of every chunk sent so far, in order.
func (h *Hub) Served() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint32(nil), h.served...)
}

// ResetCounts forgets recorded requests and served chunks.
func (h *Hub) ResetCounts() {
	h.mu.Lock()
	h.requests, h.served = nil, nil
	h.mu.Unlock()
}

// WaitFor waits until cond (called under the hub's lock with everything
// received so far) is true, failing the test after timeout. The timeout is
// a deadlock guard, not an assertion about speed.
func (h *Hub) WaitFor(timeout time.Duration, what string, cond func(reported []*agentv1.ReportedState, presence []*agentv1.Presence) bool) {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		ok := cond(h.reported, h.presence)
		ch := h.changed
		var last *agentv1.ReportedState
		if n := len(h.reported); n > 0 {
			last = h.reported[n-1]
		}
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			h.mu.Lock()
			ps := len(h.presence)
			var lp *agentv1.Presence
			if ps > 0 {
				lp = h.presence[ps-1]
			}
			h.mu.Unlock()
			h.t.Fatalf("timed out after %v waiting for %s; last reported: %v; %d presences, last: %v", timeout, what, last, ps, lp)
		}
	}
}

// WaitReported waits for a ReportedState satisfying pred and returns it.
func (h *Hub) WaitReported(timeout time.Duration, what string, pred func(*agentv1.ReportedState) bool) *agentv1.ReportedState {
	h.t.Helper()
	var got *agentv1.ReportedState
	h.WaitFor(timeout, what, func(rs []*agentv1.ReportedState, _ []*agentv1.Presence) bool {
		for _, r := range rs {
			if pred(r) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// ClearReported forgets the reported states received so far.
func (h *Hub) ClearReported() {
	h.mu.Lock()
	h.reported = nil
	h.mu.Unlock()
}

// Kick closes the connection of the MQTT client with this client id from the
// broker's side, as a network failure would (the client sent no DISCONNECT,
// so its last will is published).
func (b *Broker) Kick(clientID string) error {
	cz, err := b.srv.Connz(&server.ConnzOptions{MQTTClient: clientID})
	if err != nil {
		return err
	}
	if len(cz.Conns) == 0 {
		return fmt.Errorf("no MQTT client %q connected", clientID)
	}
	return b.srv.DisconnectClientByID(cz.Conns[0].Cid)
}

// WaitRetained waits until a new subscriber to the agent's leaf topic gets
// a retained message, i.e. the broker has stored it (the NATS MQTT listener
// stores retained messages asynchronously).
func (h *Hub) WaitRetained(url, leaf string) {
	h.t.Helper()
	for attempt := range 100 {
		got := make(chan struct{}, 1)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).
			SetClientID(fmt.Sprintf("testhub-probe-%d", attempt)).SetUsername(Username).SetPassword(Password).
			SetProtocolVersion(4).SetCleanSession(true))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			h.t.Fatalf("probe connect: %v", tok.Error())
		}
		c.Subscribe(topic(h.agent, leaf), 1, func(_ mqtt.Client, m mqtt.Message) {
			if m.Retained() {
				select {
				case got <- struct{}{}:
				default:
				}
			}
		})
		select {
		case <-got:
			c.Disconnect(0)
			return
		case <-time.After(200 * time.Millisecond):
			c.Disconnect(0)
		}
	}
	h.t.Fatalf("no retained message on %s after 100 probes", leaf)
}
