package fleetsim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/atelier-ml/atelier/agent"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// Traffic makes every simulated agent serve one deployment and score
// requests against it, so its telemetry carries what a real agent's does:
// request counts, latency and batch histograms, and a summary of each
// input feature.
type Traffic struct {
	// Deployment is the served deployment's name (default "bench"). It
	// need not exist on the hub: telemetry of any deployment is stored.
	Deployment string
	// Features is the width of one request's single input row (default 64,
	// the digits sample's).
	Features int
	// RequestsPerSecond is each agent's request rate (default 5).
	RequestsPerSecond float64
	// Interval is the agents' telemetry interval (default 1s).
	Interval time.Duration
}

func (t *Traffic) defaults() {
	if t.Deployment == "" {
		t.Deployment = "bench"
	}
	if t.Features <= 0 {
		t.Features = 64
	}
	if t.RequestsPerSecond <= 0 {
		t.RequestsPerSecond = 5
	}
	if t.Interval <= 0 {
		t.Interval = time.Second
	}
}

// meanRunner is the simulated model: the mean of each row, computed in Go.
// It stands in for ONNX Runtime, which a thousand simulated agents on one
// machine cannot each load; the telemetry path above it is the real one.
type meanRunner struct{ sig scoring.Signature }

func newMeanRunner(features int) *meanRunner {
	return &meanRunner{sig: scoring.Signature{
		Inputs:  []scoring.TensorSpec{{Name: "x", DataType: scoring.Float32, Shape: []int64{scoring.Dynamic, int64(features)}}},
		Outputs: []scoring.TensorSpec{{Name: "mean", DataType: scoring.Float32, Shape: []int64{scoring.Dynamic, 1}}},
	}}
}

func (r *meanRunner) Signature() scoring.Signature { return r.sig }

func (r *meanRunner) Run(_ context.Context, in []scoring.Tensor) ([]scoring.Tensor, error) {
	x, ok := in[0].Data.([]float32)
	if !ok || len(in[0].Shape) != 2 {
		return nil, fmt.Errorf("fleetsim: input %s: want FP32 [n,k]", in[0].Name)
	}
	n, k := in[0].Shape[0], in[0].Shape[1]
	y := make([]float32, n)
	for i := range n {
		var s float32
		for _, v := range x[i*k : (i+1)*k] {
			s += v
		}
		y[i] = s / float32(k)
	}
	return []scoring.Tensor{{Name: "mean", DataType: scoring.Float32, Shape: []int64{n, 1}, Data: y}}, nil
}

func (r *meanRunner) Close() error { return nil }

// scorer is one agent's serving side under Traffic: a real scoring
// registry holding the simulated model, observed by the agent's telemetry.
type scorer struct {
	t    Traffic
	reg  *scoring.Registry
	sent *atomic.Int64
}

func newScorer(t Traffic, sent *atomic.Int64, log *slog.Logger) (*scorer, error) {
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		return nil, err
	}
	return &scorer{t: t, reg: reg, sent: sent}, nil
}

// load loads the simulated model as version 1 of the deployment, its
// inputs observed by a's telemetry.
func (s *scorer) load(ctx context.Context, a *agent.Agent) error {
	spec := &agentv1.DeploymentSpec{Name: s.t.Deployment, Model: &agentv1.ModelRef{Name: s.t.Deployment, Version: 1}}
	_, err := s.reg.Load(ctx, s.t.Deployment, "1", a.ObserveInputs(spec, newMeanRunner(s.t.Features)))
	return err
}

// drive scores one request at a time at the configured rate, with
// exponential gaps (a Poisson arrival process), until ctx ends. Each row
// is drawn around a per-feature mean, so feature summaries are not flat.
func (s *scorer) drive(ctx context.Context, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	row := make([]float32, s.t.Features)
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
		}
		for i := range row {
			row[i] = float32(float64(i%17) + rng.NormFloat64())
		}
		v, err := s.reg.Acquire(s.t.Deployment, "")
		if err != nil {
			return
		}
		// Counted before the call: the registry counts every Infer,
		// whatever its outcome.
		s.sent.Add(1)
		_, _ = v.Infer(ctx, []scoring.Tensor{{Name: "x", DataType: scoring.Float32, Shape: []int64{1, int64(len(row))}, Data: row}})
		v.Release()
		gap.Reset(time.Duration(rng.ExpFloat64() / s.t.RequestsPerSecond * float64(time.Second)))
	}
}
