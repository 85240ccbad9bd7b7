package fleet

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// sink records uploads; full makes it refuse them.
type sink struct {
	mu      sync.Mutex
	full    bool
	uploads []string // "agent:seq,seq"
	got     chan struct{}
}

func (s *sink) OfferTelemetry(agent string, u *agentv1.TelemetryUpload) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false
	}
	var seqs []string
	for _, b := range u.GetBatches() {
		seqs = append(seqs, strconv.FormatUint(b.GetSeq(), 10))
	}
	s.uploads = append(s.uploads, agent+":"+strings.Join(seqs, ","))
	s.got <- struct{}{}
	return true
}

// ackAgent is an agent's raw MQTT client subscribed to its telemetry acks.
func (e *env) ackAgent(t *testing.T, id string) (*rawAgent, chan *agentv1.TelemetryAck) {
	t.Helper()
	ra := e.rawAgent(t, id)
	acks := make(chan *agentv1.TelemetryAck, 16)
	tok := ra.c.Subscribe(topics.Topic(id, topics.TelemetryAck), 1, func(_ mqtt.Client, m mqtt.Message) {
		var a agentv1.TelemetryAck
		if err := proto.Unmarshal(m.Payload(), &a); err != nil {
			t.Errorf("undecodable ack: %v", err)
			return
		}
		acks <- &a
	})
	if !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatalf("subscribe acks: %v", tok.Error())
	}
	return ra, acks
}

func nextAck(t *testing.T, acks chan *agentv1.TelemetryAck) *agentv1.TelemetryAck {
	t.Helper()
	select {
	case a := <-acks:
		return a
	case <-time.After(guard):
		t.Fatal("no telemetry ack")
		return nil
	}
}

func upload(seqs ...uint64) *agentv1.TelemetryUpload {
	u := &agentv1.TelemetryUpload{}
	for _, s := range seqs {
		u.Batches = append(u.Batches, &agentv1.TelemetryBatch{Seq: s})
	}
	return u
}

// TestTelemetryUploadsAndAcks: uploads reach the sink in order; the
// sink's acks reach the agent; malformed sequence numbers are refused with
// an error ack through the highest seq; retained, undecodable and
// overflowing uploads are dropped unacknowledged and counted.
func TestTelemetryUploadsAndAcks(t *testing.T) {
	sk := &sink{got: make(chan struct{}, 16)}
	e := newEnv(t, Config{Telemetry: sk})
	ra, acks := e.ackAgent(t, "a1")
	wait := func() {
		t.Helper()
		select {
		case <-sk.got:
		case <-time.After(guard):
			t.Fatal("upload not handed to the sink")
		}
	}

	ra.send(t, "a1", topics.Telemetry, upload(1, 2, 3))
	ra.send(t, "a1", topics.Telemetry, upload(4))
	wait()
	wait()
	sk.mu.Lock()
	got := strings.Join(sk.uploads, " ")
	sk.mu.Unlock()
	if got != "a1:1,2,3 a1:4" {
		t.Fatalf("sink got %q", got)
	}
	if err := e.fleet.AckTelemetry(context.Background(), TelemetryAck{Agent: "a1", ThroughSeq: 3}, TelemetryAck{Agent: "a1", ThroughSeq: 4}); err != nil {
		t.Fatal(err)
	}
	if a := nextAck(t, acks); a.GetThroughSeq() != 3 || a.GetError() != "" {
		t.Fatalf("first ack %v", a)
	}
	if a := nextAck(t, acks); a.GetThroughSeq() != 4 {
		t.Fatalf("second ack %v", a)
	}

	// Malformed sequence numbers: refused through the highest seq.
	ra.send(t, "a1", topics.Telemetry, upload(7, 5))
	a := nextAck(t, acks)
	if a.GetThroughSeq() != 7 || !strings.Contains(a.GetError(), "batches[1].seq 5 after 7") {
		t.Fatalf("refusal %v", a)
	}
	ra.send(t, "a1", topics.Telemetry, upload(0))
	if a := nextAck(t, acks); a.GetThroughSeq() != 0 || !strings.Contains(a.GetError(), "batches[0].seq is 0") {
		t.Fatalf("refusal of seq 0: %v", a)
	}

	// Undecodable, and the sink full: dropped, not acked.
	if tok := ra.c.Publish(topics.Topic("a1", topics.Telemetry), 1, false, []byte{0xff, 0xff, 0xff}); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sk.mu.Lock()
	sk.full = true
	sk.mu.Unlock()
	ra.send(t, "a1", topics.Telemetry, upload(9))
	// A marker: an upload refused (acked) after the two drops proves
	// they were dispatched (one goroutine, in order).
	ra.send(t, "a1", topics.Telemetry, upload(0))
	nextAck(t, acks)
	st := e.fleet.TelemetryStats()
	if st != (TelemetryCounters{Received: 2, Dropped: 2, Refused: 3}) {
		t.Fatalf("counters %+v, want 2 received, 2 dropped, 3 refused", st)
	}
	select {
	case a := <-acks:
		t.Fatalf("unexpected ack %v", a)
	default:
	}
}

// TestRetainedTelemetryDropped: an upload retained in the broker (the
// broker flags it retained when the fleet subscribes) is dropped, not
// handed on and not acknowledged.
func TestRetainedTelemetryDropped(t *testing.T) {
	sk := &sink{got: make(chan struct{}, 4)}
	e := newEnvNotRunning(t, Config{Telemetry: sk})
	ra, acks := e.ackAgent(t, "a3")
	b, _ := proto.Marshal(upload(8))
	if tok := ra.c.Publish(topics.Topic("a3", topics.Telemetry), 1, true, b); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { ra.c.Publish(topics.Topic("a3", topics.Telemetry), 1, true, nil).WaitTimeout(guard) })
	e.run(t)
	// A refused upload after it. The broker may deliver it before the
	// retained one (retained messages come from their own stream), so the
	// counters are awaited rather than read at the ack.
	ra.send(t, "a3", topics.Telemetry, upload(0))
	if a := nextAck(t, acks); a.GetError() == "" {
		t.Fatalf("ack %v, want a refusal", a)
	}
	deadline := time.Now().Add(guard)
	for st := e.fleet.TelemetryStats(); st != (TelemetryCounters{Dropped: 1, Refused: 1}); st = e.fleet.TelemetryStats() {
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v, want 1 dropped (the retained upload), 1 refused", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.uploads) != 0 {
		t.Fatalf("uploads %v reached the sink, want none (retained, then refused)", sk.uploads)
	}
}

// TestAckTelemetryInvalidAgent: an invalid agent id is an error naming it;
// the other acks are still published.
func TestAckTelemetryInvalidAgent(t *testing.T) {
	e := newEnv(t, Config{Telemetry: &sink{got: make(chan struct{}, 1)}})
	_, acks := e.ackAgent(t, "a2")
	err := e.fleet.AckTelemetry(context.Background(), TelemetryAck{Agent: "Bad/Id", ThroughSeq: 1}, TelemetryAck{Agent: "a2", ThroughSeq: 5})
	if err == nil || !strings.Contains(err.Error(), `"Bad/Id"`) {
		t.Fatalf("err %v", err)
	}
	if a := nextAck(t, acks); a.GetThroughSeq() != 5 {
		t.Fatalf("ack %v", a)
	}
}

// TestCheckUploadMergedBatches: a merged batch covers first_seq..seq, which
// must be well formed and come after the previous batch's seq.
func TestCheckUploadMergedBatches(t *testing.T) {
	merged := func(first, seq uint64) *agentv1.TelemetryBatch {
		return &agentv1.TelemetryBatch{FirstSeq: first, Seq: seq}
	}
	for _, tc := range []struct {
		batches []*agentv1.TelemetryBatch
		last    uint64
		refusal string
	}{
		{[]*agentv1.TelemetryBatch{{Seq: 1}, merged(2, 9), merged(10, 10), {Seq: 11}}, 11, ""},
		{[]*agentv1.TelemetryBatch{merged(5, 4)}, 4, "batches[0].first_seq 5 above its seq 4: expected first_seq <= seq"},
		{[]*agentv1.TelemetryBatch{merged(1, 5), merged(5, 8)}, 8, "batches[1].seq 5 after 5: expected strictly increasing sequence numbers"},
	} {
		last, refusal := checkUpload(&agentv1.TelemetryUpload{Batches: tc.batches})
		if last != tc.last || refusal != tc.refusal {
			t.Errorf("%v: last %d, refusal %q; want %d, %q", tc.batches, last, refusal, tc.last, tc.refusal)
		}
	}
}

// FuzzTelemetryUpload: any payload on the telemetry topic either fails to
// decode or yields an upload whose check never panics, whose last seq is
// its highest, and which is accepted only with strictly increasing
// sequence numbers from 1 (a merged batch's range first_seq..seq after
// the previous batch's seq).
func FuzzTelemetryUpload(f *testing.F) {
	for _, u := range []*agentv1.TelemetryUpload{upload(1, 2, 3), upload(7, 5), upload(0), upload()} {
		b, _ := proto.Marshal(u)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var u agentv1.TelemetryUpload
		if proto.Unmarshal(b, &u) != nil {
			return
		}
		last, refusal := checkUpload(&u)
		var prev uint64
		increasing := true
		for _, bt := range u.GetBatches() {
			if bt.GetSeq() > last {
				t.Fatalf("seq %d above last %d", bt.GetSeq(), last)
			}
			lo := bt.GetFirstSeq()
			if lo == 0 {
				lo = bt.GetSeq()
			}
			increasing = increasing && bt.GetSeq() > 0 && lo <= bt.GetSeq() && lo > prev
			prev = bt.GetSeq()
		}
		if (refusal == "") != increasing {
			t.Fatalf("refusal %q for seqs increasing=%v", refusal, increasing)
		}
	})
}
