package mqttsession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/chunkwire"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Config configures a Session. Zero durations take the defaults shown.
type Config struct {
	// Broker is the MQTT URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// AgentID is the MQTT client id and the {agent} topic level.
	AgentID  string
	Username string
	Password string
	// Capabilities go into the retained ONLINE presence.
	Capabilities *agentv1.Capabilities
	// HeartbeatSeconds is announced in the presence (the agent keeps it).
	HeartbeatSeconds uint32
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive (default 30s).
	KeepAlive time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between connection attempts (defaults 500ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// ChunkWindow is how many chunks are requested ahead (default 8).
	ChunkWindow int
	// ChunkTimeout is how long a requested chunk may take while connected
	// before it is requested again (default 15s); ChunkRetries is how many
	// times (default 4) before Chunk gives up with ErrChunkTimeout.
	ChunkTimeout time.Duration
	ChunkRetries int
}

func (c *Config) setDefaults() error {
	if c.Broker == "" {
		return fmt.Errorf("%w: Broker is empty", ErrInvalidConfig)
	}
	if !topics.ValidAgentID(c.AgentID) {
		return fmt.Errorf("%w: AgentID %q does not match [a-z0-9][a-z0-9-]{0,62}", ErrInvalidConfig, c.AgentID)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.KeepAlive, 30*time.Second)
	def(&c.MinBackoff, 500*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.ChunkTimeout, 15*time.Second)
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("%w: MaxBackoff %v below MinBackoff %v", ErrInvalidConfig, c.MaxBackoff, c.MinBackoff)
	}
	if c.ChunkWindow <= 0 {
		c.ChunkWindow = 8
	}
	if c.ChunkRetries <= 0 {
		c.ChunkRetries = 4
	}
	return nil
}

// Handlers receive what the hub sends. They run on the MQTT client's
// delivery goroutine and must not block.
type Handlers struct {
	// Desired gets every well-formed DesiredState received (retained ones
	// on each connect included). Validating its content is the caller's job.
	Desired func(*agentv1.DesiredState)
	// Connected is called after each successful (re)connect, once the
	// subscriptions are in place and the presence is published.
	Connected func()
	// TelemetryAck gets every well-formed TelemetryAck received.
	TelemetryAck func(*agentv1.TelemetryAck)
}

// Session is the agent's MQTT connection: it connects with a persistent
// session (clean session false, client id = agent id), registers a retained
// OFFLINE last will, publishes a retained ONLINE presence, subscribes to its
// desired state and chunk responses, and reconnects with jittered
// exponential backoff until Run's context ends. It also implements
// modelcache.ChunkSource over the chunk topics.
//
// Run must be called once; the other methods are safe for concurrent use
// at any time (publishing fails with ErrNotConnected while disconnected).
type Session struct {
	cfg Config
	h   Handlers
	log *slog.Logger

	mu     sync.Mutex
	client mqtt.Client   // nil while disconnected
	up     chan struct{} // closed on connect, replaced on disconnect
	down   chan struct{} // closed when the current connection ends

	chunks chunkState
}

// New validates cfg and returns a Session that is not yet connected.
func New(cfg Config, h Handlers, log *slog.Logger) (*Session, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{cfg: cfg, h: h, log: log, up: make(chan struct{}), down: make(chan struct{})}
	s.chunks.init()
	return s, nil
}

func (s *Session) topic(leaf string) string { return topics.Topic(s.cfg.AgentID, leaf) }

func (s *Session) presence(st agentv1.Presence_Status) []byte {
	b, _ := proto.Marshal(&agentv1.Presence{
		Status:           st,
		TimeUnixNano:     time.Now().UnixNano(),
		Capabilities:     s.cfg.Capabilities,
		HeartbeatSeconds: s.cfg.HeartbeatSeconds,
	})
	return b
}

// Run keeps the session connected until ctx ends, then publishes a retained
// OFFLINE presence, disconnects and returns nil. It never returns early
// because the broker is unreachable: it retries with backoff.
func (s *Session) Run(ctx context.Context) error {
	attempt := 0
	refused := false // the last attempt found nothing listening
	for {
		c, lost, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			attempt, refused = nextAttempt(attempt, refused, err)
			d := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, attempt)
			attempt++
			s.log.Warn("mqtt connect failed", "broker", s.cfg.Broker, "attempt", attempt, "retry_in", d, "error", err)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		attempt = 0
		select {
		case <-ctx.Done():
			s.setClient(nil)
			tok := c.Publish(s.topic(topics.Presence), 1, true, s.presence(agentv1.Presence_STATUS_OFFLINE))
			tok.WaitTimeout(2 * time.Second)
			c.Disconnect(250)
			s.log.Info("mqtt session closed")
			return nil
		case err := <-lost:
			s.setClient(nil)
			// Wait a jittered moment even before the first retry: a fleet
			// losing its hub at once must not reconnect at once, and the
			// broker needs the old connection gone (last will sent) first.
			d := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, 0)
			s.log.Warn("mqtt connection lost", "error", err, "retry_in", d)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// nextAttempt returns the backoff attempt number for the retry after a
// connect that failed with err, and whether err says nothing listened at
// the broker's address (connection refused). After a hub outage the
// attempts that found nothing listening have grown the delay to its cap;
// the first failure of another kind means the broker is back but could
// not take this client yet (a thousand agents reconnecting at once, each
// with a spool to drain: its handshake timed out or the connection was
// closed), so the backoff starts again from the shortest delay instead of
// waiting up to MaxBackoff once more. It grows again from there, so a
// broker that keeps failing clients is not retried at a fixed rate.
func nextAttempt(attempt int, wasRefused bool, err error) (int, bool) {
	refused := errors.Is(err, syscall.ECONNREFUSED)
	if wasRefused && !refused {
		return 0, false
	}
	return attempt, refused
}

// backoff is the delay before attempt n (0-based): exponential from min,
// capped at max, with "equal jitter" (half fixed, half random).
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := maxD
	if n < 32 && minD<<n > 0 && minD<<n < maxD {
		d = minD << n
	}
	return d/2 + rand.N(d/2+1)
}

func (s *Session) connect(ctx context.Context) (mqtt.Client, <-chan error, error) {
	lost := make(chan error, 1)
	opts := mqtt.NewClientOptions().
		AddBroker(s.cfg.Broker).
		SetClientID(s.cfg.AgentID).
		SetUsername(s.cfg.Username).
		SetPassword(s.cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		SetKeepAlive(s.cfg.KeepAlive).
		SetBinaryWill(s.topic(topics.Presence), s.presence(agentv1.Presence_STATUS_OFFLINE), 1, true).
		SetDefaultPublishHandler(s.dispatch).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	c := mqtt.NewClient(opts)
	if err := wait(ctx, c.Connect(), s.cfg.ConnectTimeout+time.Second); err != nil {
		c.Disconnect(0)
		return nil, nil, fmt.Errorf("connect %s: %w", s.cfg.Broker, err)
	}
	// Every subscription is QoS 0. For each QoS 1 subscription the
	// embedded broker keeps a JetStream consumer, and every QoS 1 message
	// anyone publishes is matched against every consumer: with 1,000
	// agents that matching was the largest part of an idle hub's CPU.
	// Nothing here needs the broker's redelivery: the desired state is
	// retained, so every (re)subscription gets the latest, and the hub
	// republishes it when a report shows an older generation; a chunk not
	// received is requested again; an upload whose ack is lost is sent
	// again and the hub counts it once.
	subs := map[string]byte{s.topic(topics.Desired): 0, s.topic(topics.ChunksResponse): 0, s.topic(topics.TelemetryAck): 0}
	if err := wait(ctx, c.SubscribeMultiple(subs, nil), s.cfg.ConnectTimeout); err != nil {
		c.Disconnect(0)
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := wait(ctx, c.Publish(s.topic(topics.Presence), 1, true, s.presence(agentv1.Presence_STATUS_ONLINE)), s.cfg.ConnectTimeout); err != nil {
		c.Disconnect(0)
		return nil, nil, fmt.Errorf("publish presence: %w", err)
	}
	s.log.Info("mqtt connected", "broker", s.cfg.Broker, "client_id", s.cfg.AgentID)
	s.setClient(c)
	s.chunks.reset() // requests in flight before the reconnect are re-sent
	if s.h.Connected != nil {
		s.h.Connected()
	}
	return c, lost, nil
}

func (s *Session) setClient(c mqtt.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil && s.client == nil {
		close(s.up)
		s.down = make(chan struct{})
	}
	if c == nil && s.client != nil {
		s.up = make(chan struct{})
		close(s.down)
	}
	s.client = c
}

// current returns the connected client (nil if none), a channel closed
// when a connection is (or already was) established, and one closed when
// the returned client's connection ends.
func (s *Session) current() (mqtt.Client, <-chan struct{}, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.up, s.down
}

// Connected reports whether the session is connected now.
func (s *Session) Connected() bool {
	c, _, _ := s.current()
	return c != nil
}

// wait waits for tok. A token of a lost connection may never complete
// (paho keeps unacknowledged QoS 1 messages of a persistent session for a
// resend we never do, since each connection is a fresh client), so it also
// gives up when down is closed.
func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	return waitConn(ctx, tok, timeout, nil)
}

func waitConn(ctx context.Context, tok mqtt.Token, timeout time.Duration, down <-chan struct{}) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-down:
		return ErrNotConnected
	case <-t.C:
		return fmt.Errorf("no answer from the broker after %v", timeout)
	}
}

// publish sends msg with QoS 1 on the agent's leaf topic and waits for the
// broker's acknowledgement.
func (s *Session) publish(ctx context.Context, leaf string, msg proto.Message, retained bool) error {
	return s.publishQoS(ctx, leaf, msg, 1, retained)
}

// publishQoS sends msg on the agent's leaf topic; with QoS 1 it waits for
// the broker's acknowledgement, with QoS 0 until it is written out.
func (s *Session) publishQoS(ctx context.Context, leaf string, msg proto.Message, qos byte, retained bool) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", leaf, err)
	}
	c, _, down := s.current()
	if c == nil {
		return fmt.Errorf("publish %s: %w", leaf, ErrNotConnected)
	}
	if err := waitConn(ctx, c.Publish(s.topic(leaf), qos, retained, b), s.cfg.ConnectTimeout, down); err != nil {
		if errors.Is(err, mqtt.ErrNotConnected) {
			err = ErrNotConnected
		}
		return fmt.Errorf("publish %s: %w", leaf, err)
	}
	return nil
}

// PublishReported publishes a ReportedState (QoS 1, not retained).
func (s *Session) PublishReported(ctx context.Context, st *agentv1.ReportedState) error {
	return s.publish(ctx, topics.Reported, st, false)
}

// PublishHeartbeat publishes a ReportedState that repeats what the hub was
// already told, at QoS 0: a lost heartbeat costs nothing (the next one or
// the next state change carries the same), and QoS 0 spares the broker
// and the hub the acknowledgement round trip of each of a fleet's
// heartbeats.
func (s *Session) PublishHeartbeat(ctx context.Context, st *agentv1.ReportedState) error {
	return s.publishQoS(ctx, topics.Reported, st, 0, false)
}

// PublishTelemetry publishes a TelemetryUpload (QoS 1, not retained) and
// waits for the broker's acknowledgement (not the hub's TelemetryAck, which
// arrives later through Handlers.TelemetryAck).
func (s *Session) PublishTelemetry(ctx context.Context, u *agentv1.TelemetryUpload) error {
	return s.publish(ctx, topics.Telemetry, u, false)
}

// WaitConnected returns nil once the session is connected (at once if it
// is), or ctx's error.
func (s *Session) WaitConnected(ctx context.Context) error {
	_, up, _ := s.current()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dispatch routes every incoming message by topic.
func (s *Session) dispatch(_ mqtt.Client, m mqtt.Message) {
	switch m.Topic() {
	case s.topic(topics.Desired):
		var d agentv1.DesiredState
		if err := proto.Unmarshal(m.Payload(), &d); err != nil {
			s.log.Error("dropping undecodable desired state", "topic", m.Topic(), "bytes", len(m.Payload()), "error", err)
			return
		}
		if s.h.Desired != nil {
			s.h.Desired(&d)
		}
	case s.topic(topics.ChunksResponse):
		// The data stays in the payload paho allocated for this message.
		r, err := chunkwire.Decode(m.Payload())
		if err != nil {
			s.log.Error("dropping undecodable chunk response", "topic", m.Topic(), "bytes", len(m.Payload()), "error", err)
			return
		}
		s.chunks.deliver(r)
	case s.topic(topics.TelemetryAck):
		var a agentv1.TelemetryAck
		if err := proto.Unmarshal(m.Payload(), &a); err != nil {
			s.log.Error("dropping undecodable telemetry ack", "topic", m.Topic(), "bytes", len(m.Payload()), "error", err)
			return
		}
		if s.h.TelemetryAck != nil {
			s.h.TelemetryAck(&a)
		}
	default:
		s.log.Warn("message on unexpected topic", "topic", m.Topic())
	}
}
