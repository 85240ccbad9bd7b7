package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub/client"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Config configures a simulated fleet.
type Config struct {
	// Hub is the hub's REST base URL, e.g. http://127.0.0.1:8780.
	Hub string
	// Agents is how many agents to run (at least 1).
	Agents int
	// DataDir holds one sub-directory per agent (credentials, desired
	// state, model cache). It must exist.
	DataDir string
	// Name prefixes the agents' names: NAME-0000, NAME-0001, ... (default
	// "sim"). Names must be unused by other live agents of the hub.
	Name string
	// Labels are given to every agent through its join token.
	Labels map[string]string
	// Heartbeat is each agent's report interval (default 10s).
	Heartbeat time.Duration
	// Enrollers is how many enrollments run at once (default 8).
	Enrollers int
	// Traffic, if set, makes every agent serve a simulated deployment and
	// score requests, reporting telemetry (see Traffic). Without it agents
	// do not score and send no telemetry batches worth the name.
	Traffic *Traffic
}

// Fleet is a running simulated fleet. Its methods are safe for concurrent
// use. Close stops it.
type Fleet struct {
	ids    []string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent        atomic.Int64 // requests scored under Traffic
	traffic     sync.WaitGroup
	stopTraffic context.CancelFunc

	mu      sync.Mutex
	changed chan struct{}                // closed and replaced on every load
	loaded  map[string]map[string]uint32 // agent id → deployment → version
	runErrs []error
}

// Start enrolls cfg.Agents agents with the hub (one join token each,
// created through the REST API) and runs them until Close. It returns once
// every agent is enrolled and running (not necessarily connected yet).
// On error the agents already started are stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Fleet, error) {
	if cfg.Agents < 1 {
		return nil, fmt.Errorf("%w: Agents %d: want at least 1", ErrInvalidConfig, cfg.Agents)
	}
	if cfg.Hub == "" || cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: Hub and DataDir are required", ErrInvalidConfig)
	}
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	if cfg.Enrollers <= 0 {
		cfg.Enrollers = 8
	}
	hc := client.New(cfg.Hub)
	httpc := &http.Client{Timeout: 30 * time.Second}

	creds := make([]*agent.Credentials, cfg.Agents)
	sem := make(chan struct{}, cfg.Enrollers)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for i := range cfg.Agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := enroll(ctx, hc, httpc, cfg, i, log)
			if err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				return
			}
			creds[i] = c
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}

	runCtx, cancel := context.WithCancel(context.Background())
	trafficCtx, stopTraffic := context.WithCancel(runCtx)
	f := &Fleet{cancel: cancel, stopTraffic: stopTraffic, changed: make(chan struct{}), loaded: map[string]map[string]uint32{}}
	if cfg.Traffic != nil {
		cfg.Traffic.defaults()
	}
	for i, c := range creds {
		var sc *scorer
		var stats agent.StatsFunc
		var interval time.Duration
		if cfg.Traffic != nil {
			var err error
			if sc, err = newScorer(*cfg.Traffic, &f.sent, log); err != nil {
				f.Close()
				return nil, fmt.Errorf("fleetsim: agent %d: %w", i, err)
			}
			stats, interval = sc.reg.Stats, cfg.Traffic.Interval
		}
		a, err := agent.New(agent.Config{
			ID: c.AgentID, DataDir: filepath.Join(cfg.DataDir, fmt.Sprintf("%s-%04d", cfg.Name, i)),
			Broker: c.MQTTURL, Username: c.AgentID, Password: c.Secret,
			Endpoint:     "http://127.0.0.1:1", // reported, never called
			Capabilities: agent.DetectCapabilities("edge", "", "fleetsim"),
			Heartbeat:    cfg.Heartbeat,
			KeepModels:   -1,
			Stats:        stats, TelemetryInterval: interval,
		}, &server{f: f, id: c.AgentID}, log.With("agent_id", c.AgentID))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fleetsim: agent %d: %w", i, err)
		}
		if sc != nil {
			if err := sc.load(ctx, a); err != nil {
				f.Close()
				return nil, fmt.Errorf("fleetsim: agent %d: load the simulated model: %w", i, err)
			}
			f.traffic.Add(1)
			go func() {
				defer f.traffic.Done()
				sc.drive(trafficCtx, uint64(i))
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = sc.reg.Close(cctx)
			}()
		}
		f.ids = append(f.ids, c.AgentID)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := a.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				f.mu.Lock()
				f.runErrs = append(f.runErrs, fmt.Errorf("agent %s: %w", c.AgentID, err))
				f.mu.Unlock()
			}
		}()
	}
	return f, nil
}

// enroll creates a join token and enrolls agent i with it.
func enroll(ctx context.Context, hc *client.Client, httpc *http.Client, cfg Config, i int, log *slog.Logger) (*agent.Credentials, error) {
	tok, err := hc.CreateJoinToken(ctx, cfg.Labels, "")
	if err != nil {
		return nil, fmt.Errorf("fleetsim: agent %d: join token: %w", i, err)
	}
	dir := filepath.Join(cfg.DataDir, fmt.Sprintf("%s-%04d", cfg.Name, i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleetsim: agent %d: %w", i, err)
	}
	c, err := agent.Enroll(ctx, httpc, cfg.Hub, agent.EnrollRequest{
		Token: tok.Token,
		Name:  fmt.Sprintf("%s-%04d", cfg.Name, i),
		Capabilities: agent.EnrollCapabilities{Kind: "edge", OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: 1,
			AgentVersion: "fleetsim"},
	}, log)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: agent %d: enroll: %w", i, err)
	}
	if err := agent.SaveCredentials(dir, c); err != nil {
		return nil, fmt.Errorf("fleetsim: agent %d: %w", i, err)
	}
	return c, nil
}

// IDs returns the agent ids, in enrollment order.
func (f *Fleet) IDs() []string { return append([]string(nil), f.ids...) }

// Loaded returns how many agents have loaded version of deployment.
func (f *Fleet) Loaded(deployment string, version uint32) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.loaded {
		if m[deployment] == version {
			n++
		}
	}
	return n
}

// WaitLoaded blocks until every agent has loaded version of deployment,
// or ctx ends (its error is returned with the count reached).
func (f *Fleet) WaitLoaded(ctx context.Context, deployment string, version uint32) error {
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		n := f.Loaded(deployment, version)
		if n == len(f.ids) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fleetsim: %d of %d agents loaded %s version %d: %w", n, len(f.ids), deployment, version, ctx.Err())
		}
	}
}

// StopTraffic stops scoring (under Config.Traffic) and waits for the last
// requests to finish; the agents keep running, so their telemetry drains.
// It returns how many requests were scored in all.
func (f *Fleet) StopTraffic() int64 {
	f.stopTraffic()
	f.traffic.Wait()
	return f.sent.Load()
}

// Sent returns how many requests have been scored so far under Traffic.
func (f *Fleet) Sent() int64 { return f.sent.Load() }

// Close stops scoring and every agent (each publishes its OFFLINE
// presence) and waits for them. It returns the errors agents' Run returned
// other than cancellation. Calling it again returns nil.
func (f *Fleet) Close() error {
	if f.cancel == nil {
		return nil
	}
	f.StopTraffic()
	f.cancel()
	f.wg.Wait()
	f.cancel = nil
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.runErrs...)
}

// server is one simulated agent's agent.Server: it checks the file the
// agent verified and records the version.
type server struct {
	f  *Fleet
	id string
}

var _ agent.Server = (*server)(nil)

func (s *server) Load(_ context.Context, spec *agentv1.DeploymentSpec, path string) error {
	deployment, version := spec.GetName(), spec.GetModel().GetVersion()
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fleetsim: load %s: %w", deployment, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("fleetsim: load %s: %s is not a regular file", deployment, path)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	m := s.f.loaded[s.id]
	if m == nil {
		m = map[string]uint32{}
		s.f.loaded[s.id] = m
	}
	m[deployment] = version
	close(s.f.changed)
	s.f.changed = make(chan struct{})
	return nil
}

func (s *server) Unload(_ context.Context, deployment string) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	delete(s.f.loaded[s.id], deployment)
	close(s.f.changed)
	s.f.changed = make(chan struct{})
	return nil
}
