package mqttsession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent/internal/modelcache"
	"github.com/atelier-ml/atelier/agent/internal/testhub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

const guard = 30 * time.Second // deadlock guard only

func testConfig(url, id string) Config {
	return Config{
		Broker: url, AgentID: id, Username: testhub.Username, Password: testhub.Password,
		Capabilities:     &agentv1.Capabilities{Kind: "edge", Os: "linux", Arch: "amd64", Cpus: 2},
		HeartbeatSeconds: 10,
		MinBackoff:       20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		ChunkTimeout: guard,
	}
}

// startSession runs a session until the test ends.
func startSession(t testing.TB, cfg Config, h Handlers) (*Session, context.CancelFunc) {
	t.Helper()
	s, err := New(cfg, h, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return s, func() { once.Do(stop) }
}

func modelData(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no broker", Config{AgentID: "a"}},
		{"bad id", Config{Broker: "tcp://127.0.0.1:1", AgentID: "A/b"}},
		{"leading dash", Config{Broker: "tcp://127.0.0.1:1", AgentID: "-a"}},
		{"backoff inverted", Config{Broker: "tcp://127.0.0.1:1", AgentID: "a", MinBackoff: time.Second, MaxBackoff: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, Handlers{}, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestBackoffBounded(t *testing.T) {
	ceil := 100 * time.Millisecond
	for n := range 100 {
		d := backoff(100*time.Millisecond, 5*time.Second, n)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: backoff %v outside [%v, %v]", n, d, ceil/2, ceil)
		}
		ceil = min(2*ceil, 5*time.Second)
	}
}

func TestPresenceDesiredAndOfflineOnClose(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	hub.PublishDesired(&agentv1.DesiredState{Generation: 7})
	hub.WaitRetained(b.URL, topics.Desired)

	got := make(chan *agentv1.DesiredState, 4)
	connected := make(chan struct{}, 4)
	s, stop := startSession(t, testConfig(b.URL, "edge-1"), Handlers{
		Desired:   func(d *agentv1.DesiredState) { got <- d },
		Connected: func() { connected <- struct{}{} },
	})
	select {
	case d := <-got:
		if d.Generation != 7 {
			t.Fatalf("retained desired generation %d, want 7", d.Generation)
		}
	case <-time.After(guard):
		t.Fatal("retained desired state never delivered")
	}
	<-connected
	hub.WaitFor(guard, "online presence", func(_ []*agentv1.ReportedState, ps []*agentv1.Presence) bool {
		return len(ps) > 0 && ps[len(ps)-1].Status == agentv1.Presence_STATUS_ONLINE &&
			ps[len(ps)-1].Capabilities.GetKind() == "edge" && ps[len(ps)-1].HeartbeatSeconds == 10
	})
	if err := s.PublishReported(context.Background(), &agentv1.ReportedState{ObservedGeneration: 7}); err != nil {
		t.Fatal(err)
	}
	hub.WaitReported(guard, "reported generation 7", func(r *agentv1.ReportedState) bool { return r.ObservedGeneration == 7 })

	// A malformed desired payload is dropped; the session keeps working.
	hub.PublishRaw("desired", []byte{0xff, 0xff, 0xff}, false)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 8})
	select {
	case d := <-got:
		if d.Generation != 8 {
			t.Fatalf("got generation %d after garbage, want 8", d.Generation)
		}
	case <-time.After(guard):
		t.Fatal("desired state after garbage never delivered")
	}

	stop()
	hub.WaitFor(guard, "offline presence", func(_ []*agentv1.ReportedState, ps []*agentv1.Presence) bool {
		return len(ps) > 0 && ps[len(ps)-1].Status == agentv1.Presence_STATUS_OFFLINE
	})
	if err := s.PublishReported(context.Background(), &agentv1.ReportedState{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("publish after close: %v, want ErrNotConnected", err)
	}
}

func TestReconnectsAfterBrokerRestart(t *testing.T) {
	b := testhub.StartBroker(t)
	connected := make(chan struct{}, 4)
	s, _ := startSession(t, testConfig(b.URL, "edge-2"), Handlers{Connected: func() { connected <- struct{}{} }})
	<-connected
	b.Restart()
	select {
	case <-connected:
	case <-time.After(guard):
		t.Fatal("no reconnect after broker restart")
	}
	if !s.Connected() {
		t.Fatal("Connected() false after reconnect")
	}
}

func TestLastWillOnAbruptLossThenReconnect(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-5")
	connected := make(chan struct{}, 4)
	cfg := testConfig(b.URL, "edge-5")
	// NATS skips the will if the same client id is already reconnecting
	// while the old connection is torn down; real agents wait ≥ MinBackoff/2.
	cfg.MinBackoff, cfg.MaxBackoff = 400*time.Millisecond, time.Second
	_, _ = startSession(t, cfg, Handlers{Connected: func() { connected <- struct{}{} }})
	<-connected
	hub.WaitFor(guard, "online", func(_ []*agentv1.ReportedState, ps []*agentv1.Presence) bool {
		return len(ps) > 0 && ps[len(ps)-1].Status == agentv1.Presence_STATUS_ONLINE
	})
	if err := b.Kick("edge-5"); err != nil {
		t.Fatal(err)
	}
	// The will says OFFLINE, then the reconnected session says ONLINE again.
	hub.WaitFor(guard, "offline (last will) then online", func(_ []*agentv1.ReportedState, ps []*agentv1.Presence) bool {
		sawOffline := false
		for _, p := range ps {
			if p.Status == agentv1.Presence_STATUS_OFFLINE {
				sawOffline = true
			}
		}
		return sawOffline && ps[len(ps)-1].Status == agentv1.Presence_STATUS_ONLINE
	})
	select {
	case <-connected:
	case <-time.After(guard):
		t.Fatal("no reconnect after the kick")
	}
}

type fuzzMsg struct {
	topic   string
	payload []byte
}

func (m fuzzMsg) Duplicate() bool   { return false }
func (m fuzzMsg) Qos() byte         { return 1 }
func (m fuzzMsg) Retained() bool    { return false }
func (m fuzzMsg) Topic() string     { return m.topic }
func (m fuzzMsg) MessageID() uint16 { return 1 }
func (m fuzzMsg) Payload() []byte   { return m.payload }
func (m fuzzMsg) Ack()              {}

// FuzzDispatch feeds arbitrary payloads on the agent's inbound topics: no
// panic, malformed messages dropped, a response for a chunk never requested
// never becomes available.
func FuzzDispatch(f *testing.F) {
	f.Add(true, []byte{0x08, 0x01})
	f.Add(false, []byte{0x0a, 0x01, 0x78, 0x12, 0x02, 0x61, 0x62, 0x22, 0x01, 0x00})
	f.Add(false, []byte{0xff})
	f.Fuzz(func(t *testing.T, desired bool, payload []byte) {
		var got int
		s, err := New(Config{Broker: "tcp://127.0.0.1:1", AgentID: "fz"}, Handlers{Desired: func(*agentv1.DesiredState) { got++ }}, nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf := topics.ChunksResponse
		if desired {
			leaf = topics.Desired
		}
		s.dispatch(nil, fuzzMsg{topics.Topic("fz", leaf), payload})
		if got > 1 {
			t.Fatalf("one message delivered %d times", got)
		}
		if n := len(s.chunks.ready); n != 0 {
			t.Fatalf("unsolicited chunk response accepted (%d ready)", n)
		}
	})
}

func TestChunkTransfer(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-3")
	data := modelData(300*1024 + 17)
	ref := hub.AddModel("m", 1, data, 16*1024)
	cfg := testConfig(b.URL, "edge-3")
	cfg.ChunkWindow = 4
	s, _ := startSession(t, cfg, Handlers{})
	cache, err := modelcache.New(modelcache.Config{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cache.Fetch(context.Background(), ref, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !slices.Equal(b, data) {
		t.Fatal("transferred model differs")
	}
	n := uint32(len(ref.ChunkSha256))
	served := hub.Served()
	slices.Sort(served)
	if want := seq(0, n); !slices.Equal(served, want) {
		t.Fatalf("served %v, want each of 0..%d once", served, n-1)
	}
	for _, r := range hub.Requests() {
		if r.Count == 0 || r.Count > 4 || r.Index+r.Count > n {
			t.Fatalf("request %v outside the window or past the end (%d chunks)", r, n)
		}
	}
	if got := len(hub.Requests()); got >= int(n) {
		t.Fatalf("%d requests for %d chunks: no batching", got, n)
	}

	// The hub refusing a blob is reported as such.
	_, err = s.Chunk(context.Background(), "00"+ref.Sha256[2:], 0)
	if !errors.Is(err, ErrChunkRefused) {
		t.Fatalf("unknown blob: %v, want ErrChunkRefused", err)
	}
}

func seq(from, to uint32) []uint32 {
	var s []uint32
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestChunkTransferResumesAcrossBrokerRestart(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-4")
	data := modelData(40 * 8192)
	ref := hub.AddModel("m", 1, data, 8192)
	const stallAt = 17
	stalled := make(chan struct{})
	var once sync.Once
	hub.SetTamper(func(_ string, i uint32, d []byte) ([]byte, bool) {
		if i >= stallAt {
			once.Do(func() { close(stalled) })
			return nil, true // the hub "loses" everything from here on
		}
		return d, false
	})
	cfg := testConfig(b.URL, "edge-4")
	// A request published while the hub's own client is still reconnecting
	// is lost; the agent asks again after ChunkTimeout.
	cfg.ChunkTimeout = time.Second
	s, _ := startSession(t, cfg, Handlers{})
	cache, err := modelcache.New(modelcache.Config{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var verified atomic.Uint64 // bytes appended and verified so far
	res := make(chan error, 1)
	go func() {
		_, err := cache.Fetch(context.Background(), ref, s, func(done uint64) { verified.Store(done) })
		res <- err
	}()
	select {
	case <-stalled:
	case err := <-res:
		t.Fatalf("fetch ended before the stall: %v", err)
	case <-time.After(guard):
		t.Fatal("transfer never reached the stall point")
	}
	// Requests are pipelined, so the hub may see the request for the stall
	// chunk before the answers below it reach the agent: wait until every
	// chunk below the stall point is verified before pulling the plug.
	deadline := time.Now().Add(guard)
	for verified.Load() < stallAt*8192 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes verified before the stall point", verified.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := len(hub.Requests())
	hub.SetTamper(nil)
	b.Restart() // the agent's connection drops; it reconnects and re-requests
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(guard):
		t.Fatal("transfer did not finish after the broker came back")
	}
	if b, _ := os.ReadFile(cache.Path(ref.Sha256)); !slices.Equal(b, data) {
		t.Fatal("transferred model differs")
	}
	// Everything below the stall point was verified before the restart and
	// must not be asked for again.
	for _, r := range hub.Requests()[before:] {
		if r.Index < stallAt {
			t.Fatalf("after the restart chunk %d was requested again (verified up to %d)", r.Index, stallAt)
		}
	}
}

// BenchmarkChunkTransfer10MiB moves a 10 MiB model through the embedded
// broker on loopback in 256 KiB chunks into a fresh cache per iteration.
func BenchmarkChunkTransfer10MiB(b *testing.B) {
	for _, window := range []int{1, 8, 16} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			br := testhub.StartBroker(b)
			hub := testhub.NewHub(b, br.URL, "bench")
			data := modelData(10 << 20)
			ref := hub.AddModel("m", 1, data, 256*1024)
			cfg := testConfig(br.URL, "bench")
			cfg.ChunkWindow = window
			s, _ := startSession(b, cfg, Handlers{})
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				cache, err := modelcache.New(modelcache.Config{Dir: b.TempDir()}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := cache.Fetch(context.Background(), ref, s, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
