package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// TelemetrySink takes agents' telemetry uploads off the fleet's dispatch
// goroutine (Config.Telemetry).
type TelemetrySink interface {
	// OfferTelemetry hands over one decoded upload of agent: at least one
	// batch, seqs from 1 and strictly increasing. It is called from the
	// fleet's dispatch goroutine and must not block (it must not wait for a
	// database): it queues the upload and returns true, or returns false
	// when it cannot take it now, and the fleet drops the upload with a
	// warning (the agent, without an acknowledgement, sends it again after
	// its ack timeout). Once the upload is stored the sink acknowledges it
	// with Fleet.AckTelemetry, through its last seq. The sink owns u.
	OfferTelemetry(agent string, u *agentv1.TelemetryUpload) bool
}

// TelemetryAck is one acknowledgement for AckTelemetry to publish.
type TelemetryAck struct {
	Agent string
	// ThroughSeq is the last seq of the upload acknowledged.
	ThroughSeq uint64
	// Error, when set, tells the agent the upload was refused as a whole:
	// it drops the batches through ThroughSeq and counts them dropped.
	Error string
}

// TelemetryCounters count what became of telemetry uploads at the fleet
// since it was created.
type TelemetryCounters struct {
	// Received counts uploads decoded and handed to the sink.
	Received uint64
	// Dropped counts uploads not handed on and not acknowledged (retained,
	// undecodable, sink full): the agent sends them again.
	Dropped uint64
	// Refused counts uploads answered with TelemetryAck.error (malformed
	// sequence numbers): the agent drops them.
	Refused uint64
}

// telemetryCounters are the atomic counters behind TelemetryCounters.
type telemetryCounters struct {
	received, dropped, refused atomic.Uint64
}

// TelemetryStats returns the fleet's telemetry counters. It is safe for
// concurrent use.
func (f *Fleet) TelemetryStats() TelemetryCounters {
	return TelemetryCounters{Received: f.tel.received.Load(), Dropped: f.tel.dropped.Load(), Refused: f.tel.refused.Load()}
}

// checkUpload returns the last seq of u and, if its sequence numbers are
// malformed, why: a refused upload is acknowledged with that error through
// its highest seq, so the agent drops it instead of sending it forever.
func checkUpload(u *agentv1.TelemetryUpload) (last uint64, refusal string) {
	var prev uint64
	for i, b := range u.GetBatches() {
		seq, first := b.GetSeq(), b.GetFirstSeq()
		last = max(last, seq)
		if first == 0 {
			first = seq
		}
		switch {
		case refusal != "":
		case seq == 0:
			refusal = fmt.Sprintf("batches[%d].seq is 0: expected sequence numbers from 1", i)
		case first > seq:
			refusal = fmt.Sprintf("batches[%d].first_seq %d above its seq %d: expected first_seq <= seq", i, first, seq)
		case first <= prev:
			refusal = fmt.Sprintf("batches[%d].seq %d after %d: expected strictly increasing sequence numbers", i, first, prev)
		}
		prev = seq
	}
	return last, refusal
}

// dispatchTelemetry handles one message on an agent's telemetry topic.
// Retained and undecodable uploads are dropped with a warning and not
// acknowledged: an ack names the seq it covers, which an undecodable upload
// does not tell, and an ack with through_seq 0 acknowledges nothing. The
// agent sends the upload again after its ack timeout; its uploads are
// re-encoded from its spool each time, so a corruption in transit does not
// repeat. An upload with no batch is ignored.
func (f *Fleet) dispatchTelemetry(ctx context.Context, agent string, m mqtt.Message) {
	if m.Retained() {
		f.tel.dropped.Add(1)
		f.log.Warn("fleet: retained telemetry upload dropped (agents never retain uploads)", "agent", agent, "bytes", len(m.Payload()))
		return
	}
	u := &agentv1.TelemetryUpload{}
	if err := proto.Unmarshal(m.Payload(), u); err != nil {
		f.tel.dropped.Add(1)
		f.log.Warn("fleet: undecodable telemetry upload dropped; the agent will send it again", "agent", agent, "bytes", len(m.Payload()), "error", err)
		return
	}
	if len(u.GetBatches()) == 0 {
		f.log.Debug("fleet: telemetry upload without batches ignored", "agent", agent)
		return
	}
	last, refusal := checkUpload(u)
	if refusal != "" {
		f.tel.refused.Add(1)
		f.log.Warn("fleet: telemetry upload refused", "agent", agent, "through_seq", last, "reason", refusal)
		// Not on the dispatch goroutine: it waits for the broker's ack.
		go func() {
			if err := f.AckTelemetry(ctx, TelemetryAck{Agent: agent, ThroughSeq: last, Error: refusal}); err != nil {
				f.log.Warn("fleet: publishing a telemetry refusal failed; the agent will send the upload again", "agent", agent, "error", err)
			}
		}()
		return
	}
	if !f.cfg.Telemetry.OfferTelemetry(agent, u) {
		f.tel.dropped.Add(1)
		f.log.Warn("fleet: telemetry queue full; upload dropped, the agent will send it again", "agent", agent, "through_seq", last)
		return
	}
	f.tel.received.Add(1)
}

// AckTelemetry publishes every ack (QoS 0, not retained) on its agent's
// telemetry/ack topic, all of them first and then waiting until they are
// written to the broker. It returns when every publication is written,
// with the errors of those that failed (each naming its agent) joined; ErrNotConnected if the fleet is not connected.
// It is safe for concurrent use.
func (f *Fleet) AckTelemetry(ctx context.Context, acks ...TelemetryAck) error {
	if len(acks) == 0 {
		return nil
	}
	if !f.client.IsConnectionOpen() {
		return fmt.Errorf("ack telemetry: %w", ErrNotConnected)
	}
	toks := make([]mqtt.Token, len(acks))
	var errs []error
	for i, a := range acks {
		if !topics.ValidAgentID(a.Agent) {
			errs = append(errs, fmt.Errorf("ack telemetry of %q: %w: agent id must match [a-z0-9][a-z0-9-]{0,62}", a.Agent, ErrInvalidDesired))
			continue
		}
		b, err := proto.Marshal(&agentv1.TelemetryAck{ThroughSeq: a.ThroughSeq, Error: a.Error})
		if err != nil {
			errs = append(errs, fmt.Errorf("ack telemetry of %s: %w", a.Agent, err))
			continue
		}
		// QoS 0: the agent subscribes at QoS 0 (see docs/protocol.md); a
		// QoS 1 publication would still pass through JetStream.
		toks[i] = f.client.Publish(topics.Topic(a.Agent, topics.TelemetryAck), 0, false, b)
	}
	timer := time.NewTimer(f.cfg.Timeout)
	defer timer.Stop()
	for i, tok := range toks {
		if tok == nil {
			continue
		}
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("ack telemetry: %w", ctx.Err()))...)
		case <-timer.C:
			return errors.Join(append(errs, fmt.Errorf("ack telemetry: no broker acknowledgement after %v", f.cfg.Timeout))...)
		}
		if err := tok.Error(); err != nil {
			errs = append(errs, fmt.Errorf("ack telemetry of %s through %d: %w", acks[i].Agent, acks[i].ThroughSeq, err))
		}
	}
	return errors.Join(errs...)
}
