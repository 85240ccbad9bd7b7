package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/atelier-ml/atelier/agent"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

var _ agent.Server = (*Server)(nil)

// Config configures a Server.
type Config struct {
	// ORT holds the ONNX Runtime session options of every model loaded
	// by the default Open.
	ORT ort.Config
	// Open opens the runner of a deployment's model file; nil opens it
	// with ONNX Runtime on the CPU (ort.Open with ORT). An FPGA agent plugs
	// its device backend in here.
	Open func(ctx context.Context, spec *agentv1.DeploymentSpec, path string) (scoring.Runner, error)
	// Wrap, if set, wraps every runner Open returns before it is loaded
	// (the agent's telemetry observes inputs this way).
	Wrap func(spec *agentv1.DeploymentSpec, r scoring.Runner) scoring.Runner
}

// Server is an agent.Server over a scoring.Registry. It is safe for
// concurrent use (calls are serialized). It does not close the registry.
type Server struct {
	cfg Config
	reg *scoring.Registry
	log *slog.Logger
	mu  sync.Mutex
}

// New returns a Server loading into reg.
func New(cfg Config, reg *scoring.Registry, log *slog.Logger) (*Server, error) {
	if reg == nil {
		return nil, errors.New("edge: nil registry")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, reg: reg, log: log}, nil
}

// Load serves the ONNX model at path as version of deployment. A new
// deployment is loaded; a served one is hot-swapped (the previous version
// drains its in-flight requests, then closes). Either way the registry runs
// a warm-up inference first, and on error whatever served before keeps
// serving. Reloading the version already served (same number, new file)
// goes through a temporary version name so it stays hot as well.
func (s *Server) Load(ctx context.Context, spec *agentv1.DeploymentSpec, path string) error {
	deployment, version := spec.GetName(), spec.GetModel().GetVersion()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := strconv.FormatUint(uint64(version), 10)
	info, err := s.reg.Model(deployment)
	served := err == nil
	if served && slices.Contains(info.Versions, v) {
		// Same version number, different file: swap to a temporary name,
		// then to the real one, so traffic never stops.
		if err := s.swap(ctx, spec, v+"-reload", path); err != nil {
			return err
		}
		return s.swap(ctx, spec, v, path)
	}
	if served {
		return s.swap(ctx, spec, v, path)
	}
	r, err := s.open(ctx, spec, path)
	if err != nil {
		return fmt.Errorf("edge: load deployment %q version %s: %w", deployment, v, err)
	}
	if _, err := s.reg.Load(ctx, deployment, v, r); err != nil {
		return fmt.Errorf("edge: load deployment %q version %s: %w", deployment, v, err)
	}
	s.log.Info("deployment loaded", "deployment", deployment, "version", v, "path", path)
	return nil
}

// open opens spec's runner with Config.Open (or ONNX Runtime) and Wrap.
func (s *Server) open(ctx context.Context, spec *agentv1.DeploymentSpec, path string) (scoring.Runner, error) {
	var r scoring.Runner
	var err error
	if s.cfg.Open != nil {
		r, err = s.cfg.Open(ctx, spec, path)
	} else {
		r, err = ort.Open(path, s.cfg.ORT, s.log)
	}
	if err != nil {
		return nil, err
	}
	if s.cfg.Wrap != nil {
		r = s.cfg.Wrap(spec, r)
	}
	return r, nil
}

func (s *Server) swap(ctx context.Context, spec *agentv1.DeploymentSpec, v, path string) error {
	deployment := spec.GetName()
	r, err := s.open(ctx, spec, path)
	if err != nil {
		return fmt.Errorf("edge: swap deployment %q to version %s: %w", deployment, v, err)
	}
	got, err := s.reg.Swap(ctx, deployment, v, r)
	if err != nil && got == "" {
		return fmt.Errorf("edge: swap deployment %q to version %s: %w", deployment, v, err)
	}
	if err != nil {
		// Traffic has switched; only closing the previous version failed or
		// was cut short (it closes when its requests finish).
		s.log.Warn("deployment swapped; previous version not closed cleanly", "deployment", deployment, "version", v, "error", err)
	}
	s.log.Info("deployment swapped", "deployment", deployment, "version", v, "path", path)
	return nil
}

// Unload stops serving every version of deployment, each after its
// in-flight requests finish. Unloading a deployment not served is a no-op.
func (s *Server) Unload(ctx context.Context, deployment string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := s.reg.Model(deployment)
	if errors.Is(err, scoring.ErrModelNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("edge: unload deployment %q: %w", deployment, err)
	}
	for _, v := range info.Versions {
		if err := s.reg.Unload(ctx, deployment, v); err != nil && !errors.Is(err, scoring.ErrModelNotFound) {
			return fmt.Errorf("edge: unload deployment %q: %w", deployment, err)
		}
	}
	s.log.Info("deployment unloaded", "deployment", deployment)
	return nil
}
