package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/broker"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

const guard = 30 * time.Second // deadlock guard, not a speed assertion

// observer records everything the fleet hands on.
type observer struct {
	mu       sync.Mutex
	reported map[string][]*agentv1.ReportedState
	presence map[string][]*agentv1.Presence
	changed  chan struct{}
}

func newObserver() *observer {
	return &observer{reported: map[string][]*agentv1.ReportedState{}, presence: map[string][]*agentv1.Presence{}, changed: make(chan struct{})}
}

func (o *observer) signalLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *observer) Reported(_ context.Context, id string, r *agentv1.ReportedState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reported[id] = append(o.reported[id], r)
	o.signalLocked()
}

func (o *observer) Presence(_ context.Context, id string, p *agentv1.Presence) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.presence[id] = append(o.presence[id], p)
	o.signalLocked()
}

// waitFor waits until cond (called under the lock) holds.
func (o *observer) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(guard)
	for {
		o.mu.Lock()
		ok, ch := cond(), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// creds is the broker's Registry, counting refused verifications.
type creds struct {
	*broker.Registry
	mu      sync.Mutex
	refused map[string]int
	changed chan struct{}
}

func (c *creds) Verify(ctx context.Context, id, secret string) (bool, error) {
	ok, err := c.Registry.Verify(ctx, id, secret)
	if !ok {
		c.mu.Lock()
		c.refused[id]++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
	return ok, err
}

// waitRefused waits until id has been refused at least n times.
func (c *creds) waitRefused(t testing.TB, id string, n int) {
	t.Helper()
	deadline := time.After(guard)
	for {
		c.mu.Lock()
		got, ch := c.refused[id], c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s refused %d times, want %d", id, got, n)
		}
	}
}

type env struct {
	creds     *creds
	hubSecret string
	b         *broker.Broker
	reg       *broker.Registry
	blobs     *blobfs.Store
	fleet     *Fleet
	obs       *observer
	url       string
	log       *slog.Logger
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := newEnvNotRunning(t, cfg)
	e.run(t)
	return e
}

// newEnvNotRunning starts the broker and creates the fleet without
// running it.
func newEnvNotRunning(t testing.TB, cfg Config) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := broker.NewRegistry()
	cr := &creds{Registry: reg, refused: map[string]int{}, changed: make(chan struct{})}
	hubSecret := broker.NewSecret()
	b, err := broker.New(broker.Config{
		Name: "fleet-" + strings.ReplaceAll(t.Name(), "/", "-"),
		NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: t.TempDir(),
		Auth: &broker.AuthConfig{Credentials: cr, HubSecret: hubSecret},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	blobs, err := blobfs.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{b: b, reg: reg, blobs: blobs, obs: newObserver(), url: "tcp://" + b.MQTTAddr(), log: log, hubSecret: hubSecret, creds: cr}
	cfg.Broker, cfg.Username, cfg.Password = e.url, broker.HubUser, hubSecret
	e.fleet, err = New(cfg, blobs, e.obs, log.With("component", "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs the fleet until the test ends and waits until it is ready.
func (e *env) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.fleet.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fleet Run: %v", err)
		}
	})
	select {
	case <-e.fleet.Ready():
	case <-time.After(guard):
		t.Fatal("fleet not ready")
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (e *env) putModel(t testing.TB, data []byte) string {
	t.Helper()
	bl, err := e.blobs.Put(context.Background(), bytes.NewReader(data), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return bl.SHA256
}

// loader is the agent's Server: it checks and records every loaded file.
type loader struct {
	mu      sync.Mutex
	loads   []string // "deployment v<version> <sha256 of the file>"
	changed chan struct{}
}

func (l *loader) Load(_ context.Context, spec *agentv1.DeploymentSpec, path string) error {
	dep, version := spec.GetName(), spec.GetModel().GetVersion()
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads = append(l.loads, fmt.Sprintf("%s v%d %x", dep, version, sum))
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

func (l *loader) Unload(context.Context, string) error { return nil }

// TestEndToEndAgentServesModel runs the real agent against the real
// broker with authentication: the fleet publishes a desired state naming a
// model in the real blob store; the agent downloads it in chunks, verifies
// it, loads it and reports it serving; its presence goes online, then
// offline when it stops.
func TestEndToEndAgentServesModel(t *testing.T) {
	e := newEnv(t, Config{})
	data := randomBytes(3*DefaultChunkSize+12345, 1) // four chunks
	sha := e.putModel(t, data)
	ref, err := e.fleet.ModelRef(context.Background(), "mnist", 3, sha)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.ChunkSha256) != 4 || ref.Size != uint64(len(data)) || ref.ChunkSize != DefaultChunkSize {
		t.Fatalf("ModelRef: %d chunks, size %d, chunk size %d", len(ref.ChunkSha256), ref.Size, ref.ChunkSize)
	}
	desired := &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Name: "mnist", Model: ref}}}
	if err := e.fleet.SetDesired(context.Background(), "edge-1", desired); err != nil {
		t.Fatal(err)
	}

	ld, stop := e.startAgent(t, "edge-1")

	e.obs.waitFor(t, "edge-1 reporting mnist v3 serving at generation 1", func() bool {
		for _, r := range e.obs.reported["edge-1"] {
			for _, d := range r.GetDeployments() {
				if r.GetObservedGeneration() == 1 && d.GetName() == "mnist" && d.GetState() == agentv1.DeploymentStatus_STATE_SERVING &&
					d.GetModelVersion() == 3 && d.GetModelSha256() == sha {
					return true
				}
			}
		}
		return false
	})
	ld.mu.Lock()
	loads := append([]string(nil), ld.loads...)
	ld.mu.Unlock()
	if want := "mnist v3 " + sha; len(loads) != 1 || loads[0] != want {
		t.Errorf("loads = %q, want [%q]", loads, want)
	}
	e.obs.waitFor(t, "online presence", func() bool {
		ps := e.obs.presence["edge-1"]
		return len(ps) > 0 && ps[len(ps)-1].GetStatus() == agentv1.Presence_STATUS_ONLINE && ps[len(ps)-1].GetCapabilities().GetKind() == "edge"
	})
	stop()
	e.obs.waitFor(t, "offline presence", func() bool {
		ps := e.obs.presence["edge-1"]
		return ps[len(ps)-1].GetStatus() == agentv1.Presence_STATUS_OFFLINE
	})
}

// startAgent issues a credential for id and runs the real agent with it
// until stop is called or the test ends.
func (e *env) startAgent(t testing.TB, id string) (ld *loader, stop func()) {
	t.Helper()
	secret, err := e.reg.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	ld = &loader{changed: make(chan struct{})}
	a, err := agent.New(agent.Config{
		ID: id, DataDir: t.TempDir(), Broker: e.url, Username: id, Password: secret,
		Endpoint: "http://127.0.0.1:8000", Capabilities: &agentv1.Capabilities{Kind: "edge"},
		Heartbeat: time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		ChunkTimeout: guard, RetryInterval: time.Hour,
	}, ld, e.log.With("component", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ld, stop
}

// TestRevokedAgentGoesOffline: revoking a running real agent disconnects
// it at once (the observer gets its OFFLINE last will) and its reconnect
// attempts are refused.
func TestRevokedAgentGoesOffline(t *testing.T) {
	e := newEnv(t, Config{})
	if err := e.fleet.SetDesired(context.Background(), "edge-2", &agentv1.DesiredState{Generation: 1}); err != nil {
		t.Fatal(err)
	}
	e.startAgent(t, "edge-2")
	e.obs.waitFor(t, "edge-2 online and reporting generation 1", func() bool {
		ps, rs := e.obs.presence["edge-2"], e.obs.reported["edge-2"]
		return len(ps) > 0 && ps[len(ps)-1].GetStatus() == agentv1.Presence_STATUS_ONLINE &&
			len(rs) > 0 && rs[len(rs)-1].GetObservedGeneration() == 1
	})
	e.creds.mu.Lock()
	before := e.creds.refused["edge-2"]
	e.creds.mu.Unlock()

	if !e.reg.Revoke("edge-2") {
		t.Fatal("no credential to revoke")
	}
	if n, err := e.b.DisconnectAgent("edge-2"); err != nil || n != 1 {
		t.Fatalf("DisconnectAgent = %d, %v; want 1", n, err)
	}
	if err := e.fleet.RemoveAgent(context.Background(), "edge-2"); err != nil {
		t.Fatal(err)
	}
	e.obs.waitFor(t, "edge-2 offline (last will)", func() bool {
		ps := e.obs.presence["edge-2"]
		return ps[len(ps)-1].GetStatus() == agentv1.Presence_STATUS_OFFLINE
	})
	// The agent retries only after a failed attempt, so two refusals
	// prove it did not get back in (a connection counted by Connz now
	// would be one of its attempts in the middle of being refused).
	e.creds.waitRefused(t, "edge-2", before+2)
	e.obs.mu.Lock()
	ps := e.obs.presence["edge-2"]
	last := ps[len(ps)-1].GetStatus()
	e.obs.mu.Unlock()
	if last != agentv1.Presence_STATUS_OFFLINE {
		t.Fatalf("presence after revocation: %v", last)
	}
}

// rawAgent is a paho client with an agent's credential, to send requests
// the real agent never would.
type rawAgent struct {
	c    mqtt.Client
	msgs chan mqtt.Message
}

func (e *env) rawAgent(t *testing.T, id string) *rawAgent {
	t.Helper()
	secret, err := e.reg.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	ra := &rawAgent{msgs: make(chan mqtt.Message, 256)}
	ra.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(e.url).SetClientID(id).
		SetUsername(id).SetPassword(secret).SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false))
	if tok := ra.c.Connect(); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { ra.c.Disconnect(50) })
	subs := map[string]byte{topics.Topic(id, topics.Desired): 1, topics.Topic(id, topics.ChunksResponse): 1}
	if tok := ra.c.SubscribeMultiple(subs, func(_ mqtt.Client, m mqtt.Message) { ra.msgs <- m }); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	return ra
}

func (ra *rawAgent) send(t *testing.T, id, leaf string, m proto.Message) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if tok := ra.c.Publish(topics.Topic(id, leaf), 1, false, b); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", leaf, tok.Error())
	}
}

func (ra *rawAgent) next(t *testing.T) mqtt.Message {
	t.Helper()
	select {
	case m := <-ra.msgs:
		return m
	case <-time.After(guard):
		t.Fatal("no message")
		return nil
	}
}

func (ra *rawAgent) nextChunk(t *testing.T) *agentv1.ChunkResponse {
	t.Helper()
	for {
		m := ra.next(t)
		if !strings.HasSuffix(m.Topic(), "/chunks/response") {
			continue // the retained desired state
		}
		var r agentv1.ChunkResponse
		if err := proto.Unmarshal(m.Payload(), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
}

// TestChunkServing: chunks are served in the chunk size of the agent's
// desired state, capped per request, and refused (ChunkResponse.error) for
// a digest the agent is not deployed with — even one another agent is —
// and for an index out of range.
func TestChunkServing(t *testing.T) {
	e := newEnv(t, Config{ChunkSize: 1024, MaxChunksPerRequest: 4, Workers: 1})
	data := randomBytes(10*1024+5, 2) // 11 chunks, the last of 5 bytes
	sha := e.putModel(t, data)
	other := e.putModel(t, randomBytes(2000, 3))
	ref, err := e.fleet.ModelRef(context.Background(), "m", 1, sha)
	if err != nil {
		t.Fatal(err)
	}
	otherRef, err := e.fleet.ModelRef(context.Background(), "o", 1, other)
	if err != nil {
		t.Fatal(err)
	}
	set := func(id string, refs ...*agentv1.ModelRef) {
		d := &agentv1.DesiredState{Generation: 1}
		for i, r := range refs {
			d.Deployments = append(d.Deployments, &agentv1.DeploymentSpec{Name: fmt.Sprint("d", i), Model: r})
		}
		if err := e.fleet.SetDesired(context.Background(), id, d); err != nil {
			t.Fatal(err)
		}
	}
	set("b", ref)
	set("c", otherRef)
	b := e.rawAgent(t, "b")

	type want struct {
		index uint32
		data  []byte // nil: an error containing errWord
		word  string
	}
	for _, tc := range []struct {
		name string
		req  *agentv1.ChunkRequest
		want []want
	}{
		{"capped window", &agentv1.ChunkRequest{Sha256: sha, Index: 0, Count: 100},
			[]want{{0, data[0:1024], ""}, {1, data[1024:2048], ""}, {2, data[2048:3072], ""}, {3, data[3072:4096], ""}}},
		{"last chunk, count past the end", &agentv1.ChunkRequest{Sha256: sha, Index: 10, Count: 4},
			[]want{{10, data[10240:], ""}}},
		{"count 0 is one chunk", &agentv1.ChunkRequest{Sha256: sha, Index: 5},
			[]want{{5, data[5120:6144], ""}}},
		{"index out of range", &agentv1.ChunkRequest{Sha256: sha, Index: 11, Count: 1},
			[]want{{11, nil, "out of range"}}},
		{"another agent's model", &agentv1.ChunkRequest{Sha256: other, Index: 0, Count: 1},
			[]want{{0, nil, "not in the desired state of agent b"}}},
		{"unknown digest", &agentv1.ChunkRequest{Sha256: strings.Repeat("0", 64), Index: 0, Count: 1},
			[]want{{0, nil, "not in the desired state"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.CorrelationId = tc.name
			b.send(t, "b", topics.ChunksRequest, tc.req)
			// One worker answers requests in order, so the next request's
			// answers cannot be mistaken for this one's.
			for _, w := range tc.want {
				r := b.nextChunk(t)
				if r.CorrelationId != tc.name || r.Sha256 != tc.req.Sha256 || r.Index != w.index {
					t.Fatalf("response %q %s #%d, want %q #%d", r.CorrelationId, r.Sha256, r.Index, tc.name, w.index)
				}
				if w.data != nil && (r.Error != "" || !bytes.Equal(r.Data, w.data)) {
					t.Fatalf("chunk %d: %d bytes, error %q; want %d bytes of the model", w.index, len(r.Data), r.Error, len(w.data))
				}
				if w.data == nil && (!strings.Contains(r.Error, w.word) || len(r.Data) != 0) {
					t.Fatalf("chunk %d: error %q with %d bytes, want an error containing %q", w.index, r.Error, len(r.Data), w.word)
				}
			}
		})
	}
	// Nothing more than asked for: a marker request's answer comes next.
	b.send(t, "b", topics.ChunksRequest, &agentv1.ChunkRequest{CorrelationId: "marker", Sha256: sha, Index: 7, Count: 1})
	if r := b.nextChunk(t); r.CorrelationId != "marker" {
		t.Fatalf("extra response %q #%d before the marker", r.CorrelationId, r.Index)
	}
}

// TestRepublishOnStaleReport: an agent reporting an older generation than
// its desired state gets the desired state again.
func TestRepublishOnStaleReport(t *testing.T) {
	e := newEnv(t, Config{})
	if err := e.fleet.SetDesired(context.Background(), "c", &agentv1.DesiredState{Generation: 5}); err != nil {
		t.Fatal(err)
	}
	c := e.rawAgent(t, "c")
	decode := func(m mqtt.Message) uint64 {
		var d agentv1.DesiredState
		if err := proto.Unmarshal(m.Payload(), &d); err != nil {
			t.Fatal(err)
		}
		return d.Generation
	}
	// The retained state may or may not reach a subscription made this
	// soon after it was published (the case the republication exists for).
	c.send(t, "c", topics.Reported, &agentv1.ReportedState{ObservedGeneration: 4})
	m := c.next(t)
	if m.Topic() != topics.Topic("c", topics.Desired) || decode(m) != 5 {
		t.Fatalf("got %s generation %d, want the desired state, generation 5", m.Topic(), decode(m))
	}
	e.obs.waitFor(t, "the report handed to the observer", func() bool {
		rs := e.obs.reported["c"]
		return len(rs) == 1 && rs[0].GetObservedGeneration() == 4
	})
	t.Logf("first desired delivery retained=%v", m.Retained())
	if m.Retained() {
		// It was the retained copy; the republication follows it.
		if m := c.next(t); decode(m) != 5 {
			t.Fatalf("republished generation %d, want 5", decode(m))
		}
	}
}

func TestSetDesiredValidation(t *testing.T) {
	e := newEnv(t, Config{})
	sha := e.putModel(t, []byte("model"))
	ok := &agentv1.ModelRef{Sha256: sha, ChunkSize: 1024, Size: 5}
	if err := e.fleet.SetDesired(context.Background(), "a", &agentv1.DesiredState{Generation: 3}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, agent string
		d           *agentv1.DesiredState
		want        error
		word        string
	}{
		{"bad agent id", "A/b", &agentv1.DesiredState{Generation: 1}, ErrInvalidDesired, "agent id"},
		{"generation 0", "a", &agentv1.DesiredState{}, ErrInvalidDesired, "generation 0"},
		{"nil", "a", nil, ErrInvalidDesired, "generation 0"},
		{"stale", "a", &agentv1.DesiredState{Generation: 2}, ErrStaleGeneration, "generation 2"},
		{"bad digest", "a", &agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{{Name: "x", Model: &agentv1.ModelRef{Sha256: "ABC", ChunkSize: 1}}}}, ErrInvalidDesired, "deployments[0].model.sha256"},
		{"chunk size 0", "a", &agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{{Name: "x", Model: &agentv1.ModelRef{Sha256: sha}}}}, ErrInvalidDesired, "chunk_size 0"},
		{"chunk size too big", "a", &agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{{Name: "x", Model: &agentv1.ModelRef{Sha256: sha, ChunkSize: MaxChunkSize + 1}}}}, ErrInvalidDesired, "chunk_size"},
		{"two chunk sizes", "a", &agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{{Name: "x", Model: ok}, {Name: "y", Model: &agentv1.ModelRef{Sha256: sha, ChunkSize: 7}}}}, ErrInvalidDesired, "chunk sizes 1024 and 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.fleet.SetDesired(context.Background(), tc.agent, tc.d)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.word) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.want, tc.word)
			}
		})
	}
	if g, _ := e.fleet.Desired("a"); g != 3 {
		t.Errorf("generation after refusals = %d, want 3", g)
	}
	if _, err := New(Config{}, e.blobs, e.obs, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New without broker: %v", err)
	}
	if _, err := New(Config{Broker: "tcp://x:1", ChunkSize: MaxChunkSize + 1}, e.blobs, e.obs, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a huge chunk size: %v", err)
	}
}

// TestModelRefCachedAndVerified: the first ModelRef reads and checks the
// blob; later ones come from memory; a corrupt or missing blob is an error.
func TestModelRefCachedAndVerified(t *testing.T) {
	e := newEnv(t, Config{ChunkSize: 100})
	dir := t.TempDir()
	blobs, err := blobfs.Open(dir, e.log)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{Broker: e.url, ChunkSize: 100}, blobs, e.obs, e.log)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(250, 4)
	bl, err := blobs.Put(context.Background(), bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := f.ModelRef(context.Background(), "m", 2, bl.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range []int{0, 100, 200} {
		sum := sha256.Sum256(data[off:min(off+100, len(data))])
		if ref.ChunkSha256[i] != hex.EncodeToString(sum[:]) {
			t.Errorf("chunk %d digest wrong", i)
		}
	}
	if ref.Name != "m" || ref.Version != 2 || ref.Size != 250 || len(ref.ChunkSha256) != 3 {
		t.Errorf("ref = %v", ref)
	}
	// Corrupt the stored file: the cached ref still answers; a fresh
	// fleet detects the corruption.
	path := filepath.Join(dir, "sha256", bl.SHA256[:2], bl.SHA256)
	if err := os.WriteFile(path, append([]byte("x"), data[1:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ModelRef(context.Background(), "m", 2, bl.SHA256); err != nil {
		t.Errorf("cached ModelRef: %v", err)
	}
	f2, err := New(Config{Broker: e.url, ChunkSize: 100}, blobs, e.obs, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.ModelRef(context.Background(), "m", 2, bl.SHA256); !errors.Is(err, ErrCorruptBlob) {
		t.Errorf("corrupt blob: %v, want ErrCorruptBlob", err)
	}
	if _, err := f2.ModelRef(context.Background(), "m", 2, strings.Repeat("a", 64)); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing blob: %v, want hub.ErrNotFound", err)
	}
}

// TestDesiredBeforeConnect: a desired state set while the fleet is not
// connected is kept and published once it connects.
func TestDesiredBeforeConnect(t *testing.T) {
	e := newEnvNotRunning(t, Config{})
	err := e.fleet.SetDesired(context.Background(), "d", &agentv1.DesiredState{Generation: 9})
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SetDesired before Run: %v, want ErrNotConnected", err)
	}
	d := e.rawAgent(t, "d") // subscribed before the fleet connects
	e.run(t)
	m := d.next(t)
	var got agentv1.DesiredState
	if err := proto.Unmarshal(m.Payload(), &got); err != nil || got.Generation != 9 {
		t.Fatalf("received %s generation %d (%v), want generation 9", m.Topic(), got.Generation, err)
	}
}

// TestRemoveAgent: after RemoveAgent the agent's chunk requests are refused
// and its retained desired state is gone.
func TestRemoveAgent(t *testing.T) {
	e := newEnv(t, Config{})
	sha := e.putModel(t, []byte("a small model"))
	ref, err := e.fleet.ModelRef(context.Background(), "m", 1, sha)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.SetDesired(context.Background(), "r", &agentv1.DesiredState{Generation: 1,
		Deployments: []*agentv1.DeploymentSpec{{Name: "m", Model: ref}}}); err != nil {
		t.Fatal(err)
	}
	r := e.rawAgent(t, "r")
	r.send(t, "r", topics.ChunksRequest, &agentv1.ChunkRequest{CorrelationId: "1", Sha256: sha, Count: 1})
	if resp := r.nextChunk(t); resp.Error != "" || string(resp.Data) != "a small model" {
		t.Fatalf("before removal: %q, error %q", resp.Data, resp.Error)
	}
	if err := e.fleet.RemoveAgent(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.fleet.Desired("r"); ok {
		t.Error("Desired still knows r")
	}
	r.send(t, "r", topics.ChunksRequest, &agentv1.ChunkRequest{CorrelationId: "2", Sha256: sha, Count: 1})
	if resp := r.nextChunk(t); !strings.Contains(resp.Error, "not in the desired state") {
		t.Fatalf("after removal: %d bytes, error %q", len(resp.Data), resp.Error)
	}
	// A new subscriber gets no retained desired state: the first thing it
	// receives is a marker published after it subscribed.
	hubc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(e.url).SetClientID("probe").
		SetUsername(broker.HubUser).SetPassword(e.hubSecret).SetProtocolVersion(4))
	if tok := hubc.Connect(); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer hubc.Disconnect(50)
	got := make(chan string, 4)
	if tok := hubc.Subscribe(topics.Topic("r", topics.Desired), 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := hubc.Publish(topics.Topic("r", topics.Desired), 1, false, "marker"); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case p := <-got:
		if p != "marker" {
			t.Fatalf("new subscriber got %q before the marker: the retained desired state survived", p)
		}
	case <-time.After(guard):
		t.Fatal("marker not received")
	}
	if err := e.fleet.RemoveAgent(context.Background(), "R"); !errors.Is(err, ErrInvalidDesired) {
		t.Errorf("RemoveAgent(R) = %v", err)
	}
}
