package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/spool"
	"github.com/atelier-ml/atelier/agent/internal/telemetry"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// Telemetry defaults (see Config).
const (
	DefaultTelemetryInterval     = 10 * time.Second
	DefaultTelemetryIdleInterval = time.Minute
	DefaultTelemetryAckTimeout   = 15 * time.Second
	DefaultTelemetryUploadBytes  = 512 << 10
	// maxUploadBatches bounds the batches of one upload.
	maxUploadBatches = 128
	// maxAckWait caps the ack timeout as it doubles after uploads that got
	// no ack.
	maxAckWait = time.Minute
)

func (c *Config) telemetryDefaults() error {
	if c.TelemetryInterval == 0 {
		c.TelemetryInterval = DefaultTelemetryInterval
	}
	if c.TelemetryInterval < time.Second {
		return fmt.Errorf("%w: TelemetryInterval %v below 1s", ErrInvalidConfig, c.TelemetryInterval)
	}
	if c.TelemetryIdleInterval == 0 {
		c.TelemetryIdleInterval = max(DefaultTelemetryIdleInterval, c.TelemetryInterval)
	}
	if c.TelemetryIdleInterval < c.TelemetryInterval {
		return fmt.Errorf("%w: TelemetryIdleInterval %v below TelemetryInterval %v", ErrInvalidConfig, c.TelemetryIdleInterval, c.TelemetryInterval)
	}
	if c.TelemetryAckTimeout <= 0 {
		c.TelemetryAckTimeout = DefaultTelemetryAckTimeout
	}
	if c.TelemetryUploadBytes <= 0 {
		c.TelemetryUploadBytes = DefaultTelemetryUploadBytes
	}
	if c.SpoolMaxBytes < 0 {
		return fmt.Errorf("%w: SpoolMaxBytes %d is negative", ErrInvalidConfig, c.SpoolMaxBytes)
	}
	if c.SpoolMaxAge < 0 {
		return fmt.Errorf("%w: SpoolMaxAge %v is negative", ErrInvalidConfig, c.SpoolMaxAge)
	}
	return nil
}

// telemetryLoop makes a TelemetryBatch every Config.TelemetryInterval,
// appends it to the spool at DataDir/telemetry whether or not the hub is
// reachable, and sends the spool's pending batches in order, one upload in
// flight, acknowledging the spool only when the hub's TelemetryAck says
// they are stored. See docs/protocol.md, "Telemetry".
type telemetryLoop struct {
	a   *Agent
	col *telemetry.Collector

	wake  chan struct{}              // 1-buffered: a batch was spooled
	up    chan struct{}              // 1-buffered: the session (re)connected
	acks  chan *agentv1.TelemetryAck // acks received, newest kept
	flush chan flushReq              // tests: make a batch now
	done  chan struct{}              // closed when both goroutines ended and the spool is closed

	// Owned by produce: when the last batch was spooled, the start of the
	// idle intervals not sent since, and the spool's dropped count then.
	lastSpooled time.Time
	idleStart   int64
	lastDropped uint64

	// Owned by send: the highest seq ever published in an upload by this
	// process (at start, the spool's last seq: a previous process may have
	// sent any of them). Only batches above it are folded (see fold).
	sentThrough uint64
}

func newTelemetryLoop(a *Agent) (*telemetryLoop, error) {
	t := &telemetryLoop{a: a, wake: make(chan struct{}, 1), up: make(chan struct{}, 1),
		acks: make(chan *agentv1.TelemetryAck, 16), flush: make(chan flushReq), done: make(chan struct{})}
	cfg := telemetry.Config{
		Stats:    a.cfg.Stats,
		DataDir:  a.cfg.DataDir,
		CacheDir: filepath.Join(a.cfg.DataDir, "models"),
		Digest:   a.servingDigest,
	}
	dr, ok := a.cfg.Devices, a.cfg.Devices != nil
	if !ok {
		dr, ok = a.srv.(DeviceReporter)
	}
	if ok {
		cfg.Devices = func() map[string]telemetry.DeviceStats {
			out := map[string]telemetry.DeviceStats{}
			for k, v := range dr.DeviceStats() {
				out[k] = telemetry.DeviceStats{Backend: v.Backend, Faults: v.Faults, Fallbacks: v.Fallbacks}
			}
			return out
		}
	}
	col, err := telemetry.New(cfg, a.log)
	if err != nil {
		return nil, err
	}
	t.col = col
	return t, nil
}

// ObserveInputs wraps a runner about to serve spec so the agent's
// telemetry summarizes its inputs (and captures samples) as spec's
// MonitorOptions say; edge.Config.Wrap takes it. Safe for concurrent use.
func (a *Agent) ObserveInputs(spec *agentv1.DeploymentSpec, r scoring.Runner) scoring.Runner {
	return a.tel.col.Wrap(spec, r)
}

// servingDigest is the sha256 serving version of deployment, or "".
func (a *Agent) servingDigest(deployment string, version uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.serving[deployment]; ok && s.version == version {
		return s.sha
	}
	return ""
}

func (t *telemetryLoop) connected() {
	select {
	case t.up <- struct{}{}:
	default:
	}
}

// ack runs on the MQTT delivery goroutine: hand the ack over without
// blocking (if the sender is behind, the oldest queued ack gives way; a
// lost ack only costs a resend).
func (t *telemetryLoop) ack(a *agentv1.TelemetryAck) {
	for {
		select {
		case t.acks <- a:
			return
		default:
		}
		select {
		case <-t.acks:
		default:
		}
	}
}

// start opens the spool and starts the producer and the sender; they stop
// when ctx ends (the producer spools one last batch first). wait blocks
// until then. A spool that cannot be opened is logged and telemetry stays
// off; serving is not affected.
func (t *telemetryLoop) start(ctx context.Context) (wait func()) {
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(t.a.cfg.DataDir, "telemetry"),
		MaxBytes: t.a.cfg.SpoolMaxBytes, MaxAge: t.a.cfg.SpoolMaxAge}, t.a.log)
	if err != nil {
		t.a.log.Error("telemetry off: spool unusable", "error", err)
		return func() {}
	}
	t.sentThrough = sp.Stats().NextSeq - 1
	produced, sent := make(chan struct{}), make(chan struct{})
	go func() { defer close(produced); t.produce(ctx, sp) }()
	go func() { defer close(sent); t.send(ctx, sp) }()
	go func() {
		<-produced
		<-sent
		if err := sp.Close(); err != nil {
			t.a.log.Warn("close telemetry spool", "error", err)
		}
		close(t.done)
	}()
	return func() { <-t.done }
}

func (t *telemetryLoop) produce(ctx context.Context, sp *spool.Spool) {
	tick := time.NewTicker(t.a.cfg.TelemetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.spoolBatch(sp, true) // the last interval's requests are not lost
			return
		case <-tick.C:
			t.spoolBatch(sp, false)
		case r := <-t.flush:
			t.spoolBatch(sp, r.force)
			close(r.done)
		}
	}
}

// spoolBatch collects one batch and appends it to the spool. An idle batch
// (no deployment, no event, no batch dropped since the last one) is not
// spooled unless force is set or TelemetryIdleInterval has passed since the
// last batch spooled: its interval is folded into the next batch spooled,
// whose start then goes back to the first idle interval's (its agent
// figures are those of its last interval). An idle fleet of 1,000 agents
// thus sends 17 uploads a second instead of 100.
func (t *telemetryLoop) spoolBatch(sp *spool.Spool, force bool) {
	b := t.col.Collect()
	ev, evDropped := t.a.takeEvents()
	b.Events = ev
	if evDropped > 0 {
		t.a.log.Warn("telemetry events dropped: more than fit between two batches", "dropped", evDropped)
	}
	st := sp.Stats()
	idle := len(b.Deployments) == 0 && len(ev) == 0 && evDropped == 0 && st.Dropped == t.lastDropped
	now := time.Now()
	if idle && !force && !t.lastSpooled.IsZero() && now.Sub(t.lastSpooled) < t.a.cfg.TelemetryIdleInterval {
		if t.idleStart == 0 {
			t.idleStart = b.StartUnixNano
		}
		return
	}
	if t.idleStart != 0 {
		b.StartUnixNano, t.idleStart = t.idleStart, 0
	}
	t.lastSpooled, t.lastDropped = now, st.Dropped
	b.DroppedBatches = st.Dropped
	b.Agent.SpoolPendingBatches = uint64(st.Pending)
	fit(b, t.a.cfg.TelemetryUploadBytes, t.a)
	payload, err := proto.Marshal(b)
	if err != nil {
		t.a.log.Error("encode telemetry batch", "error", err)
		return
	}
	seq, err := sp.Append(payload)
	if err != nil {
		t.a.log.Error("telemetry batch lost: spool append failed", "error", err, "bytes", len(payload))
		return
	}
	t.a.log.Debug("telemetry batch spooled", "seq", seq, "bytes", len(payload), "deployments", len(b.Deployments), "pending", st.Pending+1)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// fit trims b to limit bytes: captured payloads go first, then sketches,
// then feature summaries (counters and histograms always stay).
func fit(b *agentv1.TelemetryBatch, limit int, a *Agent) {
	if proto.Size(b) <= limit {
		return
	}
	steps := []struct {
		what string
		trim func(d *agentv1.DeploymentTelemetry)
	}{
		{"captured inputs", func(d *agentv1.DeploymentTelemetry) { d.Captured = nil }},
		{"feature sketches", func(d *agentv1.DeploymentTelemetry) {
			for _, f := range d.Features {
				f.Sketch = nil
			}
		}},
		{"feature summaries", func(d *agentv1.DeploymentTelemetry) { d.Features = nil }},
	}
	for _, s := range steps {
		for _, d := range b.Deployments {
			s.trim(d)
		}
		a.log.Warn("telemetry batch over its byte budget: dropped "+s.what, "limit", limit)
		if proto.Size(b) <= limit {
			return
		}
	}
}

// send uploads the spool's pending batches in order, one upload in flight.
func (t *telemetryLoop) send(ctx context.Context, sp *spool.Spool) {
	misses := 0 // uploads in a row that got no ack
	for {
		if err := t.a.sess.WaitConnected(ctx); err != nil {
			return
		}
		recs, err := sp.Peek(maxUploadBatches)
		if err != nil {
			t.a.log.Error("read telemetry spool", "error", err)
			if !t.pause(ctx, t.a.cfg.TelemetryAckTimeout) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
			case <-t.up:
			}
			continue
		}
		up, first, last := t.upload(sp, recs)
		if up == nil {
			continue
		}
		// Acks still queued belong to earlier uploads, and a reconnect
		// signalled before now is behind us.
		for drained := false; !drained; {
			select {
			case <-t.acks:
			case <-t.up:
			default:
				drained = true
			}
		}
		t.sentThrough = max(t.sentThrough, last) // even if publishing fails: it may have gone out
		if err := t.a.sess.PublishTelemetry(ctx, up); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.a.log.Debug("telemetry upload not sent", "first_seq", first, "last_seq", last, "error", err)
			if !t.pause(ctx, time.Second) {
				return
			}
			continue
		}
		// Each upload in a row that gets no ack waits twice as long (up to
		// maxAckWait): a hub that does not ingest telemetry is not sent the
		// same batches every few seconds.
		res, ok := t.awaitAck(ctx, sp, first, last, min(t.a.cfg.TelemetryAckTimeout<<min(misses, 16), max(maxAckWait, t.a.cfg.TelemetryAckTimeout)))
		if !ok {
			return
		}
		switch res {
		case ackReceived, ackReconnected:
			// A reconnect (the hub or the broker came back) starts over
			// with the short timeout: the upload lost in the outage says
			// nothing about the hub now.
			misses = 0
		default:
			misses++
		}
	}
}

// pause waits d, or until the session reconnects; false if ctx ended.
func (t *telemetryLoop) pause(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-t.up:
	}
	return true
}

// ackResult is how awaitAck ended.
type ackResult int

const (
	ackTimedOut ackResult = iota
	ackReceived
	ackReconnected
)

// awaitAck waits for the TelemetryAck of the upload [first, last] and
// acknowledges (or, if refused, discards) the spool through it. It returns
// after the ack, a timeout or a reconnect (the caller resends); ok is
// false if ctx ended.
func (t *telemetryLoop) awaitAck(ctx context.Context, sp *spool.Spool, first, last uint64, timeout time.Duration) (res ackResult, ok bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ackTimedOut, false
		case <-timer.C:
			t.a.log.Info("no telemetry ack, sending again", "first_seq", first, "last_seq", last, "timeout", timeout)
			return ackTimedOut, true
		case <-t.up:
			return ackReconnected, true
		case ack := <-t.acks:
			through := ack.GetThroughSeq()
			// Every upload starts at the oldest pending batch, so an ack
			// through last or beyond (an earlier, longer upload's, after a
			// restart) covers this one; one below it is a stale duplicate.
			if through < last {
				continue
			}
			if next := sp.Stats().NextSeq; through >= next {
				t.a.log.Warn("telemetry ack beyond the last batch made, ignored", "through_seq", through, "next_seq", next)
				continue
			}
			if ack.GetError() != "" {
				n, err := sp.Discard(through)
				t.a.log.Error("hub refused telemetry upload; batches dropped", "first_seq", first, "through_seq", through,
					"dropped", n, "reason", ack.GetError(), "error", err)
				return ackReceived, true
			}
			if err := sp.Ack(through); err != nil {
				t.a.log.Error("acknowledge telemetry spool", "through_seq", through, "error", err)
			}
			return ackReceived, true
		}
	}
}

// upload decodes consecutive records into an upload of at most
// TelemetryUploadBytes (one larger batch goes alone), with each batch's
// seq set from the spool. An undecodable record at the head is discarded
// (counted as dropped) and nil returned; one further on ends the upload
// before it.
func (t *telemetryLoop) upload(sp *spool.Spool, recs []spool.Record) (up *agentv1.TelemetryUpload, first, last uint64) {
	up = &agentv1.TelemetryUpload{}
	limit := t.a.cfg.TelemetryUploadBytes
	size := 0
	var g *foldGroup // batches being folded into the upload's next batch
	flush := func() {
		if g == nil {
			return
		}
		b := g.batch
		if g.m != nil {
			b = g.m.Batch()
			b.Seq, b.FirstSeq = g.last, g.first
			fit(b, limit/2, t.a)
		}
		size += proto.Size(b) + 4
		up.Batches = append(up.Batches, b)
		g = nil
	}
	for i, r := range recs {
		b := &agentv1.TelemetryBatch{}
		if err := proto.Unmarshal(r.Payload, b); err != nil {
			if i == 0 {
				_, derr := sp.Discard(r.Seq)
				t.a.log.Error("undecodable telemetry batch dropped", "seq", r.Seq, "error", err, "discard_error", derr)
				return nil, 0, 0
			}
			break
		}
		b.Seq = r.Seq
		if g != nil && g.takes(b) {
			if err := g.add(b); err == nil {
				last = r.Seq
				continue
			} else {
				t.a.log.Debug("telemetry batches not merged", "seq", r.Seq, "error", err)
			}
		}
		flush()
		n := proto.Size(b) + 4
		if b.Seq > t.sentThrough && size+max(n, limit/2) <= limit {
			// Never uploaded: it may absorb the next ones. It fits alone,
			// and a folded batch is trimmed to half the upload.
			g = &foldGroup{batch: b, first: r.Seq, last: r.Seq, minute: b.GetStartUnixNano() / int64(time.Minute)}
			last = r.Seq
			continue
		}
		if i > 0 && size+n > limit {
			break
		}
		size += n
		up.Batches = append(up.Batches, b)
		last = r.Seq
	}
	flush()
	return up, recs[0].Seq, last
}

// foldGroup is a run of batches never uploaded (above sentThrough: after
// an outage, those made while the hub was away), consecutive and starting
// in the same minute, that goes up as one batch first..last. A backlog of
// one batch a second thus goes up as one batch a minute, which the hub
// stores in one step; batches sent before are sent again as they were, so
// the hub's deduplication by seq still holds. See docs/protocol.md.
type foldGroup struct {
	batch       *agentv1.TelemetryBatch // the first, while it is alone
	m           *telemetry.Merger       // from the second on
	first, last uint64
	minute      int64
}

func (g *foldGroup) takes(b *agentv1.TelemetryBatch) bool {
	return b.GetSeq() == g.last+1 && b.GetStartUnixNano()/int64(time.Minute) == g.minute
}

// add folds b in; on an error (batches that cannot be merged exactly) the
// group is unchanged.
func (g *foldGroup) add(b *agentv1.TelemetryBatch) error {
	if g.m == nil {
		m, err := telemetry.NewMerger(proto.Clone(g.batch).(*agentv1.TelemetryBatch))
		if err != nil {
			return err
		}
		if err := m.Add(b); err != nil {
			return err
		}
		g.m = m
	} else if err := g.m.Add(b); err != nil {
		return err
	}
	g.last = b.GetSeq()
	return nil
}

// flushTelemetry makes and spools a batch now (for tests); it returns
// false if the loop is not running.
func (a *Agent) flushTelemetry(ctx context.Context) bool { return a.telemetryTick(ctx, true) }

// flushReq asks produce for a batch now: forced (as at shutdown), or as a
// tick of the interval timer would.
type flushReq struct {
	done  chan struct{}
	force bool
}

func (a *Agent) telemetryTick(ctx context.Context, force bool) bool {
	done := make(chan struct{})
	select {
	case a.tel.flush <- flushReq{done, force}:
	case <-ctx.Done():
		return false
	case <-a.tel.done:
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
