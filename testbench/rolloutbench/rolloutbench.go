package rolloutbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
)

// ChunkSize is the chunk size of the raw fan-out, the hub's chunk size.
const ChunkSize = 256 << 10

// rawWindow bounds the raw fan-out's publishes in flight (QoS 1: not yet
// acknowledged; QoS 0: not yet written).
const rawWindow = 64

// Result is what Run measures.
type Result struct {
	Agents   int     `json:"agents"`
	ModelMiB float64 `json:"model_mib"`
	Chunks   int     `json:"chunks"`
	// RolloutSeconds: deployment created → the hub's deployment shows every
	// agent serving the version (from their reports).
	RolloutSeconds float64 `json:"rollout_seconds"`
	// LoadedSeconds: deployment created → every agent loaded the verified
	// file (agent side, before its report reaches the hub).
	LoadedSeconds float64 `json:"loaded_seconds"`
	// RawFanoutSeconds: the same bytes in the same chunks published with
	// QoS 1 to the same number of MQTT subscribers, one topic each, with no
	// protocol → every subscriber received every byte.
	RawFanoutSeconds float64 `json:"raw_fanout_seconds"`
	// RawFanoutQoS0Seconds is the same at QoS 0, the QoS the protocol's
	// chunk responses travel at (docs/protocol.md).
	RawFanoutQoS0Seconds float64 `json:"raw_fanout_qos0_seconds"`
	// Ratio is RolloutSeconds over the faster of the two raw fan-outs.
	Ratio float64 `json:"ratio"`
	// Rounds is how many times each was measured; the figures above are
	// medians of the samples below.
	Rounds         int       `json:"rounds"`
	RolloutSamples []float64 `json:"rollout_samples"`
	LoadedSamples  []float64 `json:"loaded_samples"`
	RawSamples     []float64 `json:"raw_fanout_samples"`
	RawQoS0Samples []float64 `json:"raw_fanout_qos0_samples"`
}

type options struct {
	json     bool
	agents   int
	modelMiB float64
	rounds   int
	dir      string
	profile  string
}

// Run parses flags from args, runs the benchmark and writes a table (or,
// with --json, a JSON object) to w.
func Run(ctx context.Context, args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.json, "json", false, "print a JSON object instead of a table")
	fs.IntVar(&o.agents, "agents", 50, "simulated agents")
	fs.Float64Var(&o.modelMiB, "model-mib", 10, "model size in MiB")
	fs.IntVar(&o.rounds, "rounds", 3, "measurements of each (a new model version per rollout round); medians are reported")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the rollout rounds (hub, broker and fleet, all in this process) to this file")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.agents < 1 || o.agents > 10_000 {
		return fmt.Errorf("rollout bench: --agents %d: want 1-10000", o.agents)
	}
	if !(o.modelMiB > 0) || o.modelMiB > 1024 {
		return fmt.Errorf("rollout bench: --model-mib %v: want above 0 and at most 1024", o.modelMiB)
	}
	if o.rounds < 1 || o.rounds > 100 {
		return fmt.Errorf("rollout bench: --rounds %d: want 1-100", o.rounds)
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "rolloutbench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := measure(ctx, o, log)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "rollout of a %.1f MiB model (%d chunks of 256 KiB) to %d agents, median of %d rounds\n", res.ModelMiB, res.Chunks, res.Agents, res.Rounds)
	fmt.Fprintf(tw, "rollout_seconds\t%.3f\tdeploy → the hub shows every agent serving it\n", res.RolloutSeconds)
	fmt.Fprintf(tw, "loaded_seconds\t%.3f\tdeploy → every agent loaded the verified file\n", res.LoadedSeconds)
	fmt.Fprintf(tw, "raw_fanout_seconds\t%.3f\tthe same bytes, QoS 1, one topic per subscriber, no protocol\n", res.RawFanoutSeconds)
	fmt.Fprintf(tw, "raw_fanout_qos0_seconds\t%.3f\tthe same at QoS 0 (the QoS of the protocol's chunk responses)\n", res.RawFanoutQoS0Seconds)
	fmt.Fprintf(tw, "ratio\t%.2f\trollout / the faster raw fan-out (aim: at most 2, i.e. at least 50%% of the raw rate)\n", res.Ratio)
	return tw.Flush()
}

func measure(ctx context.Context, o options, log *slog.Logger) (Result, error) {
	models := make([][]byte, o.rounds)
	for i := range models {
		models[i] = modelOfSize(o.modelMiB, int64(i))
	}
	res := Result{Agents: o.agents, ModelMiB: float64(len(models[0])) / (1 << 20),
		Chunks: (len(models[0]) + ChunkSize - 1) / ChunkSize, Rounds: o.rounds}
	var err error
	res.RolloutSamples, res.LoadedSamples, err = measureRollout(ctx, o, models, log)
	if err != nil {
		return res, err
	}
	res.RawSamples, err = measureRawFanout(ctx, o, models[0], 1, log)
	if err != nil {
		return res, err
	}
	res.RawQoS0Samples, err = measureRawFanout(ctx, o, models[0], 0, log)
	if err != nil {
		return res, err
	}
	res.RawFanoutQoS0Seconds = median(res.RawQoS0Samples)
	res.RolloutSeconds, res.LoadedSeconds, res.RawFanoutSeconds = median(res.RolloutSamples), median(res.LoadedSamples), median(res.RawSamples)
	res.Ratio = res.RolloutSeconds / min(res.RawFanoutSeconds, res.RawFanoutQoS0Seconds)
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// modelOfSize returns a valid ONNX model (an MLP 1024 → h → 1) of about
// mib MiB of float32 weights; seed makes each round's model different.
func modelOfSize(mib float64, seed int64) []byte {
	h := max(1, int(mib*(1<<20)/4/1026))
	return onnxtest.MLP(1024, []int{h}, 1, seed)
}

// measureRollout runs a real hub and a fleetsim fleet, registers the
// models as versions 1..n, waits for every agent to be online, then times
// round k: the deployment created (k = 0) or updated to version k+1, until
// every agent serves it. It returns the samples in seconds.
func measureRollout(ctx context.Context, o options, models [][]byte, log *slog.Logger) (rollout, loaded []float64, err error) {
	cfg := server.DefaultConfig()
	cfg.Data = filepath.Join(o.dir, "hub")
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	srv, err := server.New(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(hubCtx) }()
	defer func() {
		stopHub()
		if herr := <-done; herr != nil && err == nil {
			err = fmt.Errorf("hub: %w", herr)
		}
	}()
	select {
	case <-srv.Ready():
	case err := <-done:
		done <- err
		return nil, nil, fmt.Errorf("hub did not start: %w", err)
	}
	url := "http://" + srv.Addrs().HTTP
	c := client.New(url)
	if _, err := c.CreateWorkspace(ctx, "bench", ""); err != nil {
		return nil, nil, err
	}
	for _, m := range models {
		if _, err := c.RegisterModel(ctx, "bench", "big", bytes.NewReader(m), int64(len(m)), client.RegisterOptions{}); err != nil {
			return nil, nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(o.dir, "agents"), 0o700); err != nil {
		return nil, nil, err
	}
	fleet, err := fleetsim.Start(ctx, fleetsim.Config{Hub: url, Agents: o.agents, DataDir: filepath.Join(o.dir, "agents"),
		Labels: map[string]string{"bench": "rollout"}}, log)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if ferr := fleet.Close(); ferr != nil && err == nil {
			err = ferr
		}
	}()
	if err := poll(ctx, time.Minute, func() (bool, error) {
		as, err := c.ListAgents(ctx)
		if err != nil {
			return false, err
		}
		on := 0
		for _, a := range as {
			if a.State == hub.AgentOnline {
				on++
			}
		}
		return on == o.agents, nil
	}); err != nil {
		return nil, nil, fmt.Errorf("waiting for %d agents online: %w", o.agents, err)
	}

	if o.profile != "" {
		pf, err := os.Create(o.profile)
		if err != nil {
			return nil, nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, nil, err
		}
		defer pprof.StopCPUProfile()
	}
	for k := range models {
		r, l, err := rolloutRound(ctx, c, fleet, o.agents, k)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d: %w", k+1, err)
		}
		rollout, loaded = append(rollout, r.Seconds()), append(loaded, l.Seconds())
	}
	return rollout, loaded, nil
}

// rolloutRound deploys version k+1 (creating the deployment when k is 0)
// and waits until the hub shows all n agents serving it.
func rolloutRound(ctx context.Context, c *client.Client, fleet *fleetsim.Fleet, n, k int) (rollout, loaded time.Duration, err error) {
	version := k + 1
	start := time.Now()
	loadedCh := make(chan error, 1)
	waitCtx, cancelWait := context.WithTimeout(ctx, 10*time.Minute)
	defer cancelWait()
	go func() {
		err := fleet.WaitLoaded(waitCtx, "big", uint32(version))
		loaded = time.Since(start)
		loadedCh <- err
	}()
	ref := fmt.Sprintf("big:%d", version)
	if k == 0 {
		_, err = c.CreateDeployment(ctx, "bench", hub.DeploymentCreate{Name: "big", Model: ref, Selector: map[string]string{"bench": "rollout"}})
	} else {
		_, err = c.UpdateDeployment(ctx, "bench", "big", hub.DeploymentUpdate{Model: ref})
	}
	if err != nil {
		cancelWait()
		<-loadedCh
		return 0, 0, err
	}
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		d, err := c.GetDeployment(ctx, "bench", "big")
		if err != nil {
			return false, err
		}
		serving := 0
		for _, t := range d.Targets {
			if t.State == "serving" && t.ModelVersion == version {
				serving++
			}
		}
		return serving == n, nil
	}); err != nil {
		cancelWait()
		<-loadedCh
		return 0, 0, fmt.Errorf("waiting for the rollout: %w", err)
	}
	rollout = time.Since(start)
	if err := <-loadedCh; err != nil {
		return 0, 0, err
	}
	return rollout, loaded, nil
}

// poll calls f every 20 ms until it reports done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// measureRawFanout starts a broker configured as the hub's embedded one
// (nats-server with JetStream and its MQTT listener, in this process; no
// authentication) and times the model's chunks published with QoS 1 to
// n subscribers, each on its own topic with a persistent session, as
// agents are. The hub's own broker cannot be used: it admits only agents,
// on their own topics, and the hub's clients with a per-start secret.
func measureRawFanout(ctx context.Context, o options, model []byte, qos byte, log *slog.Logger) ([]float64, error) {
	nopts := &natsserver.Options{
		ServerName: "rolloutbench", Host: "127.0.0.1", Port: -1, JetStream: true, NoSigs: true,
		StoreDir: filepath.Join(o.dir, "raw-broker"), MQTT: natsserver.MQTTOpts{Host: "127.0.0.1", Port: -1},
	}
	ns, err := natsserver.NewServer(nopts)
	if err != nil {
		return nil, fmt.Errorf("raw broker: %w", err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("raw broker: not ready within 10s")
	}
	addr := net.JoinHostPort(nopts.MQTT.Host, strconv.Itoa(nopts.MQTT.Port))
	connect := func(id string, h mqtt.MessageHandler) (mqtt.Client, error) {
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
			SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
		if h != nil {
			opts.SetDefaultPublishHandler(h)
		}
		c := mqtt.NewClient(opts)
		if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return nil, fmt.Errorf("raw broker: connect %s: %v", id, t.Error())
		}
		return c, nil
	}

	// round is the fan-out in progress; the subscribers' handler counts
	// down its bytes.
	type round struct {
		remaining atomic.Int64
		done      chan struct{}
		once      sync.Once
	}
	var cur atomic.Pointer[round]
	var subs []mqtt.Client
	defer func() {
		for _, s := range subs {
			s.Disconnect(100)
		}
	}()
	for i := range o.agents {
		topic := fmt.Sprintf("raw/v1/agents/sub-%d/chunks/response", i)
		c, err := connect(fmt.Sprintf("sub-%d", i), func(_ mqtt.Client, m mqtt.Message) {
			if r := cur.Load(); r != nil && r.remaining.Add(-int64(len(m.Payload()))) == 0 {
				r.once.Do(func() { close(r.done) })
			}
		})
		if err != nil {
			return nil, err
		}
		subs = append(subs, c)
		if t := c.Subscribe(topic, 1, nil); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return nil, fmt.Errorf("raw broker: subscribe %s: %v", topic, t.Error())
		}
	}
	pub, err := connect("publisher", nil)
	if err != nil {
		return nil, err
	}
	defer pub.Disconnect(100)

	var samples []float64
	for k := range o.rounds {
		r := &round{done: make(chan struct{})}
		r.remaining.Store(int64(o.agents) * int64(len(model)))
		cur.Store(r)
		start := time.Now()
		// At most rawWindow QoS 1 publishes in flight, as any publisher
		// (and the protocol's chunk window) bounds them: an unbounded burst
		// of hundreds of MiB stalls the broker's MQTT session instead of
		// measuring it.
		var inflight []mqtt.Token
		wait := func(t mqtt.Token) error {
			if !t.WaitTimeout(time.Minute) {
				return fmt.Errorf("raw broker: round %d: publish not acknowledged within a minute", k+1)
			}
			if err := t.Error(); err != nil {
				return fmt.Errorf("raw broker: round %d: publish: %w", k+1, err)
			}
			return nil
		}
		for i := range o.agents {
			topic := fmt.Sprintf("raw/v1/agents/sub-%d/chunks/response", i)
			for off := 0; off < len(model); off += ChunkSize {
				if len(inflight) == rawWindow {
					if err := wait(inflight[0]); err != nil {
						return nil, err
					}
					inflight = inflight[1:]
				}
				inflight = append(inflight, pub.Publish(topic, qos, false, model[off:min(off+ChunkSize, len(model))]))
			}
		}
		for _, t := range inflight {
			if err := wait(t); err != nil {
				return nil, err
			}
		}
		select {
		case <-r.done:
		case <-time.After(5 * time.Minute):
			return nil, fmt.Errorf("raw fan-out: round %d: %d bytes still missing after 5 minutes", k+1, r.remaining.Load())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		samples = append(samples, time.Since(start).Seconds())
	}
	log.Debug("raw fan-out done", "seconds", samples)
	return samples, nil
}
