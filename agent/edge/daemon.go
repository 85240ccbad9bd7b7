package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/atelier-ml/atelier/agent"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// DaemonConfig configures Run: the whole edge agent.
type DaemonConfig struct {
	// Agent configures the agent core. Endpoint should be the URL clients
	// reach the listener at (see Run).
	Agent agent.Config
	// Registry, HTTP and ORT configure the in-process scoring.
	Registry scoring.RegistryConfig
	HTTP     scoring.ServerConfig
	ORT      ort.Config
	// Open, if set, opens deployments' runners instead of ONNX Runtime on
	// the CPU (see Config.Open).
	Open func(ctx context.Context, spec *agentv1.DeploymentSpec, path string) (scoring.Runner, error)
}

// Run is the edge agent: it serves scoring HTTP on ln (Open Inference
// Protocol v2, /score, /metrics over an in-process registry) and runs the
// agent core with a Server loading into that registry, until ctx ends or
// the HTTP server fails. It then stops both (the agent says goodbye to the
// broker, HTTP drains gracefully), closes every loaded model and returns.
// Run closes ln. A nil error means a clean shutdown after ctx ended.
func Run(ctx context.Context, ln net.Listener, cfg DaemonConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, err := scoring.NewRegistry(cfg.Registry, log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("edge: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Close(cctx); err != nil {
			log.Error("close models", "error", err)
		}
	}()
	hs, err := scoring.NewServer(cfg.HTTP, reg, log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("edge: %w", err)
	}
	// The agent's telemetry observes every runner's inputs; the agent is
	// made after the Server it drives, and Wrap runs only from its Run.
	var a *agent.Agent
	wrap := func(spec *agentv1.DeploymentSpec, r scoring.Runner) scoring.Runner { return a.ObserveInputs(spec, r) }
	es, err := New(Config{ORT: cfg.ORT, Open: cfg.Open, Wrap: wrap}, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	acfg := cfg.Agent
	if acfg.Stats == nil {
		acfg.Stats = reg.Stats
	}
	a, err = agent.New(acfg, es, log)
	if err != nil {
		ln.Close()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ctx, ln) }()
	log.Info("edge agent up", "agent_id", cfg.Agent.ID, "broker", cfg.Agent.Broker, "endpoint", cfg.Agent.Endpoint,
		"listen", ln.Addr().String(), "auth", len(cfg.HTTP.Keys) > 0)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	var runErr, srvErr error
	select {
	case runErr = <-ran:
		cancel()
		srvErr = <-served
	case srvErr = <-served:
		// The scoring endpoint stopped: stop the agent too.
		cancel()
		runErr = <-ran
	}
	if srvErr != nil && !errors.Is(srvErr, context.Canceled) {
		return fmt.Errorf("edge: scoring endpoint: %w", srvErr)
	}
	if runErr != nil {
		return runErr
	}
	log.Info("edge agent stopped")
	return nil
}
