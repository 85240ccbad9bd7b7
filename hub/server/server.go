package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/broker"
	"github.com/atelier-ml/atelier/hub/internal/drift"
	"github.com/atelier-ml/atelier/hub/internal/fleet"
	"github.com/atelier-ml/atelier/hub/internal/rollout"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
)

// AddrFile is the name, inside the data directory, of the file Run writes
// with the bound addresses (JSON of Addrs).
const AddrFile = "hub.addr"

// ErrDataLocked is returned by Run when another hub holds the data
// directory's lock (LockFile).
var ErrDataLocked = errors.New("data directory locked")

// Addrs are the addresses the hub is listening on.
type Addrs struct {
	HTTP string `json:"http"`
	MQTT string `json:"mqtt"`
	NATS string `json:"nats"`
}

// Server is the hub. Create it with New and start it with Run, once.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu        sync.Mutex
	addrs     Addrs
	ran       bool
	hubSecret string // the broker password of broker.HubUser, set by Run
}

// New validates cfg and returns a server that is not started yet.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, ready: make(chan struct{})}, nil
}

// Ready is closed once every listener is bound and hub.addr is written.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound addresses; empty before Ready.
func (s *Server) Addrs() Addrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs
}

// Run opens the store, starts the broker and the HTTP API, and blocks until
// ctx is done; then it shuts everything down in order and returns nil, or
// the first error. It may be called once.
func (s *Server) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("hub: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()

	cfg := s.cfg
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	lock, err := lockData(cfg.Data)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if lock != nil {
		defer lock.Close() // last: every deferred shutdown below runs first
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(cfg.Data, DBFile)}, s.log.With("component", "store"))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("hub: close store: %w", cerr)
		}
	}()
	blobs, err := blobfs.Open(filepath.Join(cfg.Data, "blobs"), s.log.With("component", "blobs"))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}

	// Every broker client authenticates: agents with the secret from
	// enrollment (verified against the store's hashes), the hub's own
	// clients as broker.HubUser with a secret made at every start.
	hubSecret := broker.NewSecret()
	s.mu.Lock()
	s.hubSecret = hubSecret
	s.mu.Unlock()
	br, err := broker.New(broker.Config{
		Name: "atelier-hub", NATS: cfg.NATS, MQTT: cfg.MQTT,
		StoreDir: filepath.Join(cfg.Data, "jetstream"),
		Auth:     &broker.AuthConfig{Credentials: storeCredentials{st: store}, HubSecret: hubSecret},
	}, s.log)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := br.Start(ctx); err != nil {
		br.Shutdown()
		return fmt.Errorf("hub: %w", err)
	}
	defer br.Shutdown()

	// The hub side of the agent protocol, recording presence in the store
	// and handing reports to the rollout (per-target deployment states).
	pres := newPresence(store, time.Second, s.log.With("component", "presence"))
	ro := rollout.New(rollout.Config{}, store, s.log.With("component", "rollout"))
	ing := newIngester(ingestConfig{}, store, s.log.With("component", "telemetry")) // group-commits telemetry (telemetry.go)
	fl, err := fleet.New(fleet.Config{Broker: "tcp://" + br.MQTTAddr(), Username: broker.HubUser, Password: hubSecret, Telemetry: ing},
		blobs, rollout.Tee(pres, ro, newDeploymentEvents(store, s.log.With("component", "events"))), s.log.With("component", "fleet"))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	fctx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	var fleetWG sync.WaitGroup
	fleetWG.Go(func() { _ = fl.Run(fctx) })
	fleetWG.Go(func() { pres.run(fctx) })
	fleetWG.Go(func() { ing.run(fctx, fl) })
	fleetWG.Go(func() { runTelemetryRetention(fctx, store, cfg, s.log.With("component", "telemetry")) })
	// The event log's retention, and the webhook when one is configured.
	fleetWG.Go(func() { runEvents(fctx, cfg, store, s.log.With("component", "events")) })
	// Input drift: every minute, each deployment against its baseline (docs/drift.md).
	fleetWG.Go(func() { drift.Run(fctx, drift.EvaluatorConfig{}, store, blobs, s.log.With("component", "drift")) })
	// Captured inputs become versions of dataset capture-<deployment> every minute (docs/datasets.md).
	fleetWG.Go(func() { runCaptureExport(fctx, store, blobs, s.log.With("component", "datasets")) })
	defer func() { stopFleet(); fleetWG.Wait() }() // before the broker shuts down
	select {
	case <-fl.Ready():
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		s.log.Warn("the fleet endpoint has not connected to the broker yet; continuing (it keeps trying)")
	}
	// The rollout pushes every agent's desired state now (the fleet keeps
	// them in memory only), then on every change.
	fleetWG.Go(func() { _ = ro.Run(fctx, fl) })
	advertise := cfg.AdvertiseMQTT
	if advertise == "" {
		advertise = br.MQTTAddr()
	}

	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("hub: http listen: %w", err)
	}
	if host, _, _ := net.SplitHostPort(cfg.HTTP); !isLoopback(host) {
		s.log.Warn("the HTTP API is listening on a non-loopback address and has no authentication yet: anyone who can reach it can read and change everything", "addr", ln.Addr().String())
	}
	a := api.New(api.Config{
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxBatchBytes:    cfg.MaxBatchBytes,
		MaxMetricPoints:  cfg.MaxMetricPoints,
		MaxArtifactBytes: cfg.MaxArtifactBytes,
		AgentMQTTURL:     "tcp://" + advertise,
		AgentRevoker:     notifyingRevoker{AgentRevoker: &revoker{br: br, fl: fl, pr: pres, log: s.log.With("component", "agents")}, ro: ro},
		Rollout:          ro,
	}, notifyingStore{Store: store, ro: ro}, blobs, s.log.With("component", "api"))
	hs := &http.Server{
		Handler:           withMetrics(a, ing, fl, cfg.Pprof), // GET /metrics, /debug/pprof/ if enabled, then the API
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	addrs := Addrs{HTTP: ln.Addr().String(), MQTT: br.MQTTAddr(), NATS: br.NATSAddr()}
	s.mu.Lock()
	s.addrs = addrs
	s.mu.Unlock()

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	addrPath := filepath.Join(cfg.Data, AddrFile)
	if err := writeFileAtomic(addrPath, addrs); err != nil {
		_ = hs.Close()
		<-served
		return fmt.Errorf("hub: %w", err)
	}
	s.log.Info("hub listening", "http", addrs.HTTP, "mqtt", addrs.MQTT, "nats", addrs.NATS, "data", cfg.Data)
	close(s.ready)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	s.log.Info("hub shutting down")
	a.Close() // end log streams so Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Warn("in-flight requests did not finish in time; closing them", "timeout", cfg.ShutdownTimeout, "err", err)
		_ = hs.Close()
	}
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if err := os.Remove(addrPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove address file", "path", addrPath, "err", err)
	}
	if serveErr != nil {
		return fmt.Errorf("hub: http: %w", serveErr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeFileAtomic writes v as JSON to path: temp file, fsync, rename, fsync
// of the directory.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".hub.addr-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadAddrs reads the address file a running hub wrote in its data dir.
func ReadAddrs(data string) (Addrs, error) {
	var a Addrs
	b, err := os.ReadFile(filepath.Join(data, AddrFile))
	if err != nil {
		return a, fmt.Errorf("hub address file: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("hub address file %s: %w", filepath.Join(data, AddrFile), err)
	}
	return a, nil
}
