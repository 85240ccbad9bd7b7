package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// Chunk sizes.
const (
	// DefaultChunkSize is the chunk size of ModelRefs built by ModelRef.
	DefaultChunkSize = 256 << 10
	// MaxChunkSize bounds any chunk size the fleet serves: a chunk plus its
	// envelope must stay well under the broker's 1 MiB payload limit.
	MaxChunkSize = 512 << 10
)

// Observer receives what agents report. Calls come from one goroutine, in
// arrival order; a slow Observer delays the next message (and, once the
// fleet's inbox is full, the broker connection), so it should be quick.
// ctx is Run's.
type Observer interface {
	Reported(ctx context.Context, agentID string, r *agentv1.ReportedState)
	Presence(ctx context.Context, agentID string, p *agentv1.Presence)
}

// Config configures a Fleet. Zero values take the defaults shown.
type Config struct {
	// Broker is the MQTT URL of the hub's broker, e.g. tcp://127.0.0.1:1883.
	Broker string
	// ClientID is the MQTT client id (default "atelier-hub-fleet").
	ClientID string
	// Username and Password are the hub's broker credential
	// (broker.HubUser and AuthConfig.HubSecret).
	Username, Password string
	// ChunkSize is the chunk size of the ModelRefs ModelRef builds
	// (default DefaultChunkSize, at most MaxChunkSize).
	ChunkSize uint32
	// MaxChunksPerRequest caps ChunkRequest.count (default 16).
	MaxChunksPerRequest uint32
	// Workers is how many chunk requests are served at once (default 4).
	Workers int
	// QueueSize bounds the chunk requests waiting for a worker (default
	// 4096); a request arriving when it is full is dropped with a warning
	// (the agent asks again after its chunk timeout).
	QueueSize int
	// RepublishInterval is the least time between two republications of
	// an agent's desired state to an agent reporting an older generation
	// (default 2s).
	RepublishInterval time.Duration
	// Timeout bounds connecting and each publication's acknowledgement
	// (default 10s).
	Timeout time.Duration
	// Telemetry, when set, receives agents' telemetry uploads (the fleet
	// subscribes to atelier/v1/agents/+/telemetry only then); see
	// TelemetrySink and AckTelemetry.
	Telemetry TelemetrySink
}

func (c *Config) setDefaults() error {
	if c.Broker == "" {
		return fmt.Errorf("fleet: %w: Broker is empty", ErrInvalidConfig)
	}
	if c.ClientID == "" {
		c.ClientID = "atelier-hub-fleet"
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.ChunkSize > MaxChunkSize {
		return fmt.Errorf("fleet: %w: ChunkSize %d above %d", ErrInvalidConfig, c.ChunkSize, MaxChunkSize)
	}
	if c.MaxChunksPerRequest == 0 {
		c.MaxChunksPerRequest = 16
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.RepublishInterval <= 0 {
		c.RepublishInterval = 2 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	return nil
}

// agentState is what the fleet knows of one agent's desired state.
type agentState struct {
	payload     []byte            // the encoded DesiredState
	generation  uint64            // its generation
	models      map[string]uint32 // digest → chunk size it is served in
	unpublished bool              // the last publication failed
	republished time.Time         // last republication after a stale report
}

// chunkJob is one chunk request to serve.
type chunkJob struct {
	agent string
	req   *agentv1.ChunkRequest
}

// Fleet is the hub's protocol endpoint. Create it with New and call Run
// once; the other methods are safe for concurrent use at any time.
type Fleet struct {
	cfg   Config
	blobs hub.Blobs
	obs   Observer
	log   *slog.Logger

	client mqtt.Client
	inbox  chan mqtt.Message
	work   chan chunkJob
	ready  chan struct{}
	once   sync.Once
	stop   chan struct{} // closed when Run ends: handlers stop queueing

	mu     sync.Mutex
	agents map[string]*agentState

	refs refCache
	bufs sync.Pool // *[]byte: chunk response messages, reused once sent
	tel  telemetryCounters
}

// New validates cfg and prepares the MQTT client; it does not connect.
// blobs serves chunk data; obs receives reports (required both).
func New(cfg Config, blobs hub.Blobs, obs Observer, log *slog.Logger) (*Fleet, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if blobs == nil || obs == nil {
		return nil, fmt.Errorf("fleet: %w: nil Blobs or Observer", ErrInvalidConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, blobs: blobs, obs: obs, log: log,
		inbox: make(chan mqtt.Message, 1024), work: make(chan chunkJob, cfg.QueueSize),
		ready: make(chan struct{}), stop: make(chan struct{}), agents: map[string]*agentState{}}
	f.refs.m = map[refKey]*refEntry{}
	opts := mqtt.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).SetPassword(cfg.Password).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(cfg.Timeout).SetWriteTimeout(cfg.Timeout).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			select {
			case f.inbox <- m:
			case <-f.stop:
			}
		}).
		SetOnConnectHandler(f.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			log.Warn("fleet: broker connection lost; reconnecting", "error", err)
		})
	f.client = mqtt.NewClient(opts)
	return f, nil
}

// Ready is closed once the fleet is connected and subscribed for the first
// time.
func (f *Fleet) Ready() <-chan struct{} { return f.ready }

// onConnect runs on its own goroutine after every (re)connect: subscribe
// (clean session: subscriptions are per connection), then publish the
// desired states whose publication failed.
func (f *Fleet) onConnect(c mqtt.Client) {
	subs := map[string]byte{
		topics.All(topics.Reported):      1,
		topics.All(topics.Presence):      1,
		topics.All(topics.ChunksRequest): 1,
	}
	if f.cfg.Telemetry != nil {
		subs[topics.All(topics.Telemetry)] = 1
	}
	for attempt := 1; ; attempt++ {
		tok := c.SubscribeMultiple(subs, nil)
		var err error
		if !tok.WaitTimeout(f.cfg.Timeout) {
			err = fmt.Errorf("no answer after %v", f.cfg.Timeout)
		} else if err = tok.Error(); err == nil {
			for topic, q := range tok.(*mqtt.SubscribeToken).Result() {
				if q > 1 {
					err = fmt.Errorf("subscription to %s refused by the broker (granted %#x)", topic, q)
				}
			}
		}
		if err == nil {
			break
		}
		f.log.Error("fleet: subscribe failed; retrying", "attempt", attempt, "error", err)
		select {
		case <-f.stop:
			return
		case <-time.After(time.Second):
		}
		if !c.IsConnectionOpen() {
			return // the next OnConnect subscribes
		}
	}
	f.log.Info("fleet: connected and subscribed", "broker", f.cfg.Broker)
	f.once.Do(func() { close(f.ready) })

	f.mu.Lock()
	var pending []string
	for id, st := range f.agents {
		if st.unpublished {
			pending = append(pending, id)
		}
	}
	f.mu.Unlock()
	for _, id := range pending {
		f.publishCurrent(id)
	}
}

// Run connects (retrying until ctx ends), serves until ctx ends, then
// disconnects and returns nil.
func (f *Fleet) Run(ctx context.Context) error {
	f.client.Connect() // with ConnectRetry it keeps trying in the background
	var wg sync.WaitGroup
	for range f.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-f.work:
					f.serveChunks(ctx, j.agent, j.req)
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-f.inbox:
				f.dispatch(ctx, m)
			}
		}
	})
	<-ctx.Done()
	close(f.stop) // a handler blocked on the full inbox returns
	f.client.Disconnect(250)
	wg.Wait()
	return nil
}

// dispatch decodes one message and hands it on.
func (f *Fleet) dispatch(ctx context.Context, m mqtt.Message) {
	agent, leaf, ok := topics.Parse(m.Topic())
	if !ok {
		f.log.Warn("fleet: message on an unexpected topic", "topic", m.Topic())
		return
	}
	switch leaf {
	case topics.Reported:
		if m.Retained() {
			return // agents never retain reports: a stale or forged one
		}
		var r agentv1.ReportedState
		if err := proto.Unmarshal(m.Payload(), &r); err != nil {
			f.log.Warn("fleet: undecodable reported state dropped", "agent", agent, "bytes", len(m.Payload()), "error", err)
			return
		}
		f.obs.Reported(ctx, agent, &r)
		f.maybeRepublish(agent, r.GetObservedGeneration())
	case topics.Presence:
		if len(m.Payload()) == 0 {
			return // a cleared retained presence
		}
		var p agentv1.Presence
		if err := proto.Unmarshal(m.Payload(), &p); err != nil {
			f.log.Warn("fleet: undecodable presence dropped", "agent", agent, "bytes", len(m.Payload()), "error", err)
			return
		}
		f.obs.Presence(ctx, agent, &p)
	case topics.ChunksRequest:
		if m.Retained() {
			return // would be answered again on every reconnect
		}
		var r agentv1.ChunkRequest
		if err := proto.Unmarshal(m.Payload(), &r); err != nil {
			f.log.Warn("fleet: undecodable chunk request dropped", "agent", agent, "bytes", len(m.Payload()), "error", err)
			return
		}
		select {
		case f.work <- chunkJob{agent: agent, req: &r}:
		default:
			f.log.Warn("fleet: chunk request queue full; request dropped", "agent", agent, "sha256", r.GetSha256(), "index", r.GetIndex())
		}
	case topics.Telemetry:
		if f.cfg.Telemetry != nil {
			f.dispatchTelemetry(ctx, agent, m)
		}
	}
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// SetDesired makes d agent's desired state: it is recorded (so chunk
// requests for its models are served from now on) and published retained
// on the agent's desired topic; SetDesired waits for the broker's
// acknowledgement. A generation older than the current one is refused with
// ErrStaleGeneration; the same generation is published again. If the
// publication fails (ErrNotConnected or a broker error), the state stays
// recorded and is published on the next (re)connect or stale report.
func (f *Fleet) SetDesired(ctx context.Context, agent string, d *agentv1.DesiredState) error {
	if !topics.ValidAgentID(agent) {
		return fmt.Errorf("set desired state of %q: %w: agent id must match [a-z0-9][a-z0-9-]{0,62}", agent, ErrInvalidDesired)
	}
	if d.GetGeneration() == 0 {
		return fmt.Errorf("set desired state of %s: %w: generation 0 (generations start at 1)", agent, ErrInvalidDesired)
	}
	models := map[string]uint32{}
	for i, dep := range d.GetDeployments() {
		m := dep.GetModel()
		if !digestRE.MatchString(m.GetSha256()) {
			return fmt.Errorf("set desired state of %s: %w: deployments[%d].model.sha256 %q is not 64 lower-case hex digits", agent, ErrInvalidDesired, i, m.GetSha256())
		}
		if cs := m.GetChunkSize(); cs == 0 || cs > MaxChunkSize {
			return fmt.Errorf("set desired state of %s: %w: deployments[%d].model.chunk_size %d not in [1, %d]", agent, ErrInvalidDesired, i, cs, MaxChunkSize)
		}
		if prev, dup := models[m.GetSha256()]; dup && prev != m.GetChunkSize() {
			return fmt.Errorf("set desired state of %s: %w: model %s listed with chunk sizes %d and %d", agent, ErrInvalidDesired, m.GetSha256(), prev, m.GetChunkSize())
		}
		models[m.GetSha256()] = m.GetChunkSize()
	}
	b, err := proto.Marshal(d)
	if err != nil {
		return fmt.Errorf("set desired state of %s: %w", agent, err)
	}
	f.mu.Lock()
	if st := f.agents[agent]; st != nil && d.GetGeneration() < st.generation {
		cur := st.generation
		f.mu.Unlock()
		return fmt.Errorf("set desired state of %s: generation %d: %w (%d)", agent, d.GetGeneration(), ErrStaleGeneration, cur)
	}
	f.agents[agent] = &agentState{payload: b, generation: d.GetGeneration(), models: models, unpublished: true}
	f.mu.Unlock()
	if err := f.publish(ctx, agent, b, d.GetGeneration()); err != nil {
		return fmt.Errorf("set desired state of %s: %w", agent, err)
	}
	return nil
}

// publish sends payload retained on agent's desired topic and waits for
// the acknowledgement; on success it marks generation published. If a newer
// generation was recorded meanwhile (concurrent SetDesired calls can be
// acknowledged out of order), it publishes that one too, so the retained
// message ends up being the newest.
func (f *Fleet) publish(ctx context.Context, agent string, payload []byte, generation uint64) error {
	for {
		if !f.client.IsConnectionOpen() {
			return ErrNotConnected
		}
		tok := f.client.Publish(topics.Topic(agent, topics.Desired), 1, true, payload)
		t := time.NewTimer(f.cfg.Timeout)
		select {
		case <-tok.Done():
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("publish desired: no acknowledgement after %v", f.cfg.Timeout)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish desired: %w", err)
		}
		f.mu.Lock()
		st := f.agents[agent]
		switch {
		case st == nil:
		case st.generation == generation:
			st.unpublished = false
		case st.generation > generation:
			payload, generation = st.payload, st.generation
			f.mu.Unlock()
			continue
		}
		f.mu.Unlock()
		return nil
	}
}

// publishCurrent publishes agent's recorded state, logging failures.
func (f *Fleet) publishCurrent(agent string) {
	f.mu.Lock()
	st := f.agents[agent]
	if st == nil {
		f.mu.Unlock()
		return
	}
	payload, gen := st.payload, st.generation
	f.mu.Unlock()
	if err := f.publish(context.Background(), agent, payload, gen); err != nil {
		f.log.Warn("fleet: publishing desired state failed; will retry", "agent", agent, "generation", gen, "error", err)
	}
}

// maybeRepublish publishes agent's desired state again when it reported an
// older generation, at most once per RepublishInterval.
func (f *Fleet) maybeRepublish(agent string, observed uint64) {
	f.mu.Lock()
	st := f.agents[agent]
	if st == nil || observed >= st.generation || time.Since(st.republished) < f.cfg.RepublishInterval {
		f.mu.Unlock()
		return
	}
	st.republished = time.Now()
	gen := st.generation
	f.mu.Unlock()
	f.log.Info("fleet: agent reports an older generation; publishing its desired state again", "agent", agent, "observed", observed, "generation", gen)
	go f.publishCurrent(agent) // not on the dispatch goroutine: it waits for the ack
}

// RemoveAgent forgets agent's desired state (its chunk requests are
// refused from now on) and clears the retained desired state in the broker
// (an empty retained message), for a decommissioned or revoked agent. It
// waits for the broker's acknowledgement.
func (f *Fleet) RemoveAgent(ctx context.Context, agent string) error {
	if !topics.ValidAgentID(agent) {
		return fmt.Errorf("remove agent %q: %w: agent id must match [a-z0-9][a-z0-9-]{0,62}", agent, ErrInvalidDesired)
	}
	f.mu.Lock()
	delete(f.agents, agent)
	f.mu.Unlock()
	if err := f.publish(ctx, agent, nil, 0); err != nil {
		return fmt.Errorf("remove agent %s: %w", agent, err)
	}
	return nil
}

// Desired returns the generation recorded for agent and whether there is one.
func (f *Fleet) Desired(agent string) (generation uint64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.agents[agent]; st != nil {
		return st.generation, true
	}
	return 0, false
}

// entitled returns the chunk size agent's desired state serves sha in.
func (f *Fleet) entitled(agent, sha string) (uint32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.agents[agent]; st != nil {
		cs, ok := st.models[sha]
		return cs, ok
	}
	return 0, false
}
