package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/testhub"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// telHub plays the hub's telemetry ingestion over real MQTT: it keeps
// every batch by seq (idempotent, like the hub's store) and answers each
// upload with a TelemetryAck, unless told to lose or duplicate acks.
type telHub struct {
	t      *testing.T
	client mqtt.Client
	agent  string

	mu       sync.Mutex
	batches  map[uint64]*agentv1.TelemetryBatch
	folded   map[uint64]uint64 // seq → the seq of the merged batch that covers it
	order    []uint64          // seqs in order of first receipt
	uploads  int
	dupes    int // batches received again
	loseAcks int // acks still to lose
	dupAcks  bool
	changed  chan struct{}
}

func newTelHub(t *testing.T, url, agent string) *telHub {
	t.Helper()
	h := &telHub{t: t, agent: agent, batches: map[uint64]*agentv1.TelemetryBatch{},
		folded: map[uint64]uint64{}, changed: make(chan struct{})}
	subscribed := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("telhub-" + agent).
		SetUsername(testhub.Username).SetPassword(testhub.Password).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.Subscribe(topics.Topic(agent, topics.Telemetry), 1, h.onUpload)
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
		t.Fatalf("telemetry hub connect: %v", tok.Error())
	}
	if err := <-subscribed; err != nil {
		t.Fatalf("telemetry hub subscribe: %v", err)
	}
	t.Cleanup(func() { h.client.Disconnect(100) })
	return h
}

func (h *telHub) onUpload(c mqtt.Client, m mqtt.Message) {
	var u agentv1.TelemetryUpload
	if err := proto.Unmarshal(m.Payload(), &u); err != nil || len(u.Batches) == 0 {
		h.t.Errorf("undecodable or empty telemetry upload (%d bytes): %v", len(m.Payload()), err)
		return
	}
	h.mu.Lock()
	h.uploads++
	prev := uint64(0)
	for i, b := range u.Batches {
		first := b.FirstSeq
		if first == 0 {
			first = b.Seq
		}
		if i > 0 && first != prev+1 {
			h.t.Errorf("upload batches not consecutive: seq %d..%d after %d", first, b.Seq, prev)
		}
		prev = b.Seq
		if h.have(first) || h.have(b.Seq) {
			h.dupes++
			continue
		}
		h.batches[b.Seq] = b
		for s := first; s < b.Seq; s++ {
			h.folded[s] = b.Seq
		}
		h.order = append(h.order, b.Seq)
	}
	lose := h.loseAcks > 0
	if lose {
		h.loseAcks--
	}
	dup := h.dupAcks
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	if lose {
		return
	}
	ack, _ := proto.Marshal(&agentv1.TelemetryAck{ThroughSeq: prev})
	for range 1 + btoi(dup) {
		c.Publish(topics.Topic(h.agent, topics.TelemetryAck), 1, false, ack)
	}
}

// have reports whether seq was received, alone or in a merged batch.
func (h *telHub) have(seq uint64) bool {
	_, ok := h.batches[seq]
	_, folded := h.folded[seq]
	return ok || folded
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// waitSeqs waits until batches 1..n have all arrived.
func (h *telHub) waitSeqs(n uint64) {
	h.t.Helper()
	deadline := time.After(guard)
	for {
		h.mu.Lock()
		ch, have := h.changed, true
		for s := uint64(1); s <= n; s++ {
			if !h.have(s) {
				have = false
				break
			}
		}
		h.mu.Unlock()
		if have {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Fatalf("timed out waiting for telemetry batches 1..%d; have %v", n, h.order)
		}
	}
}

// check verifies arrival order and returns the ok requests of deployment
// "dep" over every batch received.
func (h *telHub) check() (ok uint64, batches int) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.IsSorted(h.order) {
		h.t.Fatalf("batches arrived out of order: %v", h.order)
	}
	next := uint64(1)
	for _, s := range h.order {
		first := h.batches[s].FirstSeq
		if first == 0 {
			first = s
		}
		if first != next {
			h.t.Fatalf("batch seqs %v: %d..%d where %d was next; want 1..n without gaps", h.order, first, s, next)
		}
		next = s + 1
	}
	for _, b := range h.batches {
		for _, d := range b.Deployments {
			if d.Name == "dep" {
				ok += d.Requests["ok"]
			}
		}
	}
	return ok, len(h.batches)
}

// scorer is a real scoring registry serving an ONNX MLP as deployment "dep".
type scorer struct{ reg *scoring.Registry }

func newScorer(t *testing.T) *scorer {
	t.Helper()
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(p, onnxtest.MLP(4, []int{8}, 3, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := ort.Open(p, ort.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Load(context.Background(), "dep", "1", r); err != nil {
		t.Fatal(err)
	}
	return &scorer{reg: reg}
}

func (s *scorer) score(t *testing.T, n int) {
	t.Helper()
	v, err := s.reg.Acquire("dep", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	for range n {
		in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, 4}, Data: []float32{0.5, -1, 2, 0.25}}}
		if _, err := v.Infer(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

func telConfig(t *testing.T, url, dir string, s *scorer) Config {
	cfg := testConfig(t, url, dir)
	cfg.Stats = s.reg.Stats
	cfg.TelemetryInterval = time.Hour // batches are made by flush in these tests
	cfg.TelemetryAckTimeout = 300 * time.Millisecond
	return cfg
}

func flush(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if !a.flushTelemetry(ctx) {
		t.Fatal("telemetry loop not running")
	}
}

func TestTelemetryBatchesInOrderSumToRequests(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	a, _ := startAgent(t, telConfig(t, b.URL, t.TempDir(), s), newRecorder())
	n := 0
	for i, k := range []int{5, 0, 12, 3} {
		s.score(t, k)
		n += k
		flush(t, a)
		h.waitSeqs(uint64(i + 1))
	}
	ok, batches := h.check()
	if ok != uint64(n) || batches != 4 {
		t.Fatalf("hub got %d ok requests in %d batches, want %d in 4", ok, batches, n)
	}
	// Once acknowledged, nothing is pending: a later batch says so (the
	// spool's Ack follows the hub's ack, so it may take a few).
	var last *agentv1.TelemetryBatch
	for seq := uint64(5); ; seq++ {
		flush(t, a)
		h.waitSeqs(seq)
		h.mu.Lock()
		last = h.batches[seq]
		h.mu.Unlock()
		if last.GetAgent().GetSpoolPendingBatches() == 0 {
			break
		}
		if seq > 1000 {
			t.Fatalf("spool pending %d in every batch: acknowledged batches stay pending", last.GetAgent().GetSpoolPendingBatches())
		}
	}
	if last.DroppedBatches != 0 || last.GetAgent().GetProcessRssBytes() == 0 {
		t.Fatalf("last batch: dropped %d rss %d, want 0 and > 0", last.DroppedBatches, last.GetAgent().GetProcessRssBytes())
	}
}

func TestTelemetrySpoolsWhileBrokerDownThenDrains(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	a, _ := startAgent(t, telConfig(t, b.URL, t.TempDir(), s), newRecorder())
	s.score(t, 2)
	flush(t, a)
	h.waitSeqs(1)
	b.Stop()
	for _, k := range []int{4, 6, 1} {
		s.score(t, k)
		flush(t, a)
	}
	b.Restart()
	h.waitSeqs(4)
	ok, batches := h.check()
	if ok != 13 || batches >= 4 {
		t.Fatalf("hub got %d ok requests in %d batches, want 13 in fewer than 4 (batches made while the broker was away are folded)", ok, batches)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	folded := 0
	for _, b := range h.batches {
		if b.FirstSeq > 0 {
			folded++
		}
	}
	if folded == 0 {
		t.Fatalf("no merged batch among %v", h.order)
	}
}

func TestTelemetryLostAndDuplicatedAcks(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	h.loseAcks, h.dupAcks = 2, true
	s := newScorer(t)
	a, _ := startAgent(t, telConfig(t, b.URL, t.TempDir(), s), newRecorder())
	for i, k := range []int{3, 7, 9} {
		s.score(t, k)
		flush(t, a)
		h.waitSeqs(uint64(i + 1))
	}
	ok, batches := h.check()
	h.mu.Lock()
	dupes := h.dupes
	h.mu.Unlock()
	if ok != 19 || batches != 3 {
		t.Fatalf("hub got %d ok requests in %d batches, want 19 in 3", ok, batches)
	}
	if dupes == 0 {
		t.Fatal("no batch was sent again although two acks were lost")
	}
}

func TestTelemetryRestartDrainsSpool(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	dir := t.TempDir()
	b.Stop()
	a, stop := startAgent(t, telConfig(t, b.URL, dir, s), newRecorder())
	s.score(t, 8)
	flush(t, a)
	s.score(t, 5) // counted in the batch made at shutdown
	stop()
	b.Restart()
	startAgent(t, telConfig(t, b.URL, dir, s), newRecorder())
	h.waitSeqs(2)
	ok, _ := h.check()
	if ok != 13 {
		t.Fatalf("hub got %d ok requests after the restart, want 13", ok)
	}
}

func TestTelemetryRefusedUploadCountsDropped(t *testing.T) {
	b := testhub.StartBroker(t)
	s := newScorer(t)
	// A hub that refuses every upload.
	var mu sync.Mutex
	var got []*agentv1.TelemetryBatch
	uploads, refused := 0, 0
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL).SetClientID("refuser").
		SetUsername(testhub.Username).SetPassword(testhub.Password).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(topics.Topic("edge-1", topics.Telemetry), 1, func(c mqtt.Client, m mqtt.Message) {
		var u agentv1.TelemetryUpload
		if err := proto.Unmarshal(m.Payload(), &u); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		got = append(got, u.Batches...)
		uploads++
		refuse := uploads == 1
		if refuse { // the spool batches it covers (some may be merged)
			for _, b := range u.Batches {
				refused++
				if b.FirstSeq > 0 {
					refused += int(b.Seq - b.FirstSeq)
				}
			}
		}
		mu.Unlock()
		last := u.Batches[len(u.Batches)-1].Seq
		msg := &agentv1.TelemetryAck{ThroughSeq: last}
		if refuse {
			msg.Error = "upload too large"
		}
		ack, _ := proto.Marshal(msg)
		c.Publish(topics.Topic("edge-1", topics.TelemetryAck), 1, false, ack)
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	a, _ := startAgent(t, telConfig(t, b.URL, t.TempDir(), s), newRecorder())
	flush(t, a)
	deadline := time.After(guard)
	for {
		flush(t, a)
		mu.Lock()
		var last *agentv1.TelemetryBatch
		if len(got) > 0 {
			last = got[len(got)-1]
		}
		mu.Unlock()
		if last != nil && last.DroppedBatches > 0 {
			mu.Lock()
			want := uint64(refused)
			mu.Unlock()
			if last.DroppedBatches != want {
				t.Fatalf("dropped_batches %d, want %d (the refused upload's batches)", last.DroppedBatches, want)
			}
			return
		}
		select {
		case <-deadline:
			t.Fatalf("no batch reports the refused one as dropped (last %v)", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestTelemetryConfigValidation(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1", t.TempDir())
	cfg.TelemetryInterval = 500 * time.Millisecond
	if _, err := New(cfg, newRecorder(), nil); err == nil {
		t.Fatal("TelemetryInterval 500ms accepted, want an error (at least 1s)")
	}
	cfg.TelemetryInterval, cfg.SpoolMaxBytes = 0, -1
	if _, err := New(cfg, newRecorder(), nil); err == nil {
		t.Fatal("negative SpoolMaxBytes accepted")
	}
	cfg.SpoolMaxBytes, cfg.TelemetryInterval, cfg.TelemetryIdleInterval = 0, 30*time.Second, 10*time.Second
	if _, err := New(cfg, newRecorder(), nil); err == nil || !strings.Contains(err.Error(), "TelemetryIdleInterval 10s below TelemetryInterval 30s") {
		t.Fatalf("idle interval below the interval: error %v", err)
	}
}

// devices is a DeviceReporter with fixed totals (an FPGA host's figures).
type devices map[string]DeviceStats

func (d devices) DeviceStats() map[string]DeviceStats { return d }

func TestTelemetryReportsConfigDevices(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	cfg := telConfig(t, b.URL, t.TempDir(), s)
	cfg.Devices = devices{"dep": {Backend: "cpu-fallback", Faults: 1, Fallbacks: 4}}
	a, _ := startAgent(t, cfg, newRecorder())
	s.score(t, 4)
	flush(t, a)
	h.waitSeqs(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	ds := h.batches[1].Deployments
	if len(ds) != 1 || ds[0].Backend != "cpu-fallback" || ds[0].DeviceFaults != 1 || ds[0].CpuFallbacks != 4 || ds[0].Requests["ok"] != 4 {
		t.Fatalf("batch deployments %v, want dep with 4 ok, backend cpu-fallback, 1 fault, 4 fallbacks", ds)
	}
}

func TestTelemetrySpoolLimitDropsOldestAndCounts(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	cfg := telConfig(t, b.URL, t.TempDir(), s)
	cfg.SpoolMaxBytes = 2048 // a few batches
	b.Stop()
	a, _ := startAgent(t, cfg, newRecorder())
	const made = 40
	for range made {
		flush(t, a)
	}
	b.Restart()
	flush(t, a) // seq made+1 reports the final drop count
	deadline := time.After(guard)
	for {
		h.mu.Lock()
		last := h.batches[made+1]
		order := slices.Clone(h.order)
		covered := 0 // batches received, alone or folded into a merged one
		for _, b := range h.batches {
			covered++
			if b.FirstSeq > 0 {
				covered += int(b.Seq - b.FirstSeq)
			}
		}
		h.mu.Unlock()
		if last != nil {
			if !slices.IsSorted(order) || order[len(order)-1] != made+1 {
				t.Fatalf("batches arrived as %v, want increasing seqs ending at %d", order, made+1)
			}
			missing := uint64(made + 1 - covered)
			if missing == 0 || last.DroppedBatches != missing {
				t.Fatalf("%d of %d batches arrived and the last reports %d dropped; want some dropped, all counted", covered, made+1, last.DroppedBatches)
			}
			return
		}
		select {
		case <-deadline:
			t.Fatalf("batch %d never arrived (have %v)", made+1, order)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestTelemetryCarriesQueuedEvents(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	a, _ := startAgent(t, telConfig(t, b.URL, t.TempDir(), s), newRecorder())
	a.event(&agentv1.AgentEvent{Kind: "device_fault", Deployment: "dep", Message: "card 0 timed out"})
	flush(t, a)
	h.waitSeqs(1) // sent before the next is made, so the two are not folded
	flush(t, a)
	h.waitSeqs(2)
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.batches[1].Events
	if len(ev) != 1 || ev[0].Kind != "device_fault" || ev[0].Deployment != "dep" || ev[0].TimeUnixNano == 0 {
		t.Fatalf("batch 1 events %v, want the queued device_fault with its time", ev)
	}
	if len(h.batches[2].Events) != 0 {
		t.Fatalf("batch 2 repeats events %v, want none", h.batches[2].Events)
	}
}

func tick(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if !a.telemetryTick(ctx, false) {
		t.Fatal("telemetry loop not running")
	}
}

// An idle agent's ticks are folded into its next batch: nothing is sent
// until something happens (or TelemetryIdleInterval passes), and that batch
// starts where the first unsent interval did.
func TestTelemetryIdleIntervalsAreCoalesced(t *testing.T) {
	b := testhub.StartBroker(t)
	h := newTelHub(t, b.URL, "edge-1")
	s := newScorer(t)
	cfg := telConfig(t, b.URL, t.TempDir(), s)
	cfg.TelemetryIdleInterval = time.Hour
	a, _ := startAgent(t, cfg, newRecorder())

	tick(t, a) // the first batch is always sent
	h.waitSeqs(1)
	tick(t, a)
	tick(t, a)
	tick(t, a)
	s.score(t, 3)
	tick(t, a) // requests served: sent, covering the three idle ticks too
	h.waitSeqs(2)
	tick(t, a)
	a.event(&agentv1.AgentEvent{Kind: "device_fault", Deployment: "dep", Message: "card 0 timed out"})
	tick(t, a) // an event: sent
	h.waitSeqs(3)
	flush(t, a) // forced, though idle
	h.waitSeqs(4)

	if ok, _ := h.check(); ok != 3 {
		t.Fatalf("hub counted %d ok requests, want 3", ok)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b1, b2, b3 := h.batches[1], h.batches[2], h.batches[3]
	// Without folding, batches 2-4 would be the idle ticks' empty ones.
	if len(b2.Deployments) != 1 || b2.Deployments[0].Requests["ok"] != 3 {
		t.Fatalf("batch 2 has deployments %v, want dep with the 3 requests (idle ticks before it folded in)", b2.Deployments)
	}
	if b2.StartUnixNano != b1.EndUnixNano {
		t.Fatalf("batch 2 starts at %d, want the end of batch 1 (%d): the idle intervals must be folded in, not lost", b2.StartUnixNano, b1.EndUnixNano)
	}
	if len(b3.Events) != 1 || b3.StartUnixNano != b2.EndUnixNano {
		t.Fatalf("batch 3 events %v from %d, want the device_fault from %d", b3.Events, b3.StartUnixNano, b2.EndUnixNano)
	}
	if len(h.batches) != 4 {
		t.Fatalf("%d batches for 8 ticks, want 4", len(h.batches))
	}
}
