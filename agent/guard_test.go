package agent

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent/internal/testhub"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// The guard tests serve real ONNX models with ONNX Runtime in a real
// scoring registry (the edge daemon's wiring, without the HTTP layer).

const gIn, gOut = 4, 3

var gHidden = []int{8}

// goodModel is an MLP that answers any batch size.
func goodModel(seed int64) []byte { return onnxtest.MLP(gIn, gHidden, gOut, seed) }

// brokenModel is the MLP of seed with its output reshaped to the fixed
// shape [1, 3]: its warm-up (batch 1) passes, but every request with a
// batch of 2 fails inside ONNX Runtime.
func brokenModel(t *testing.T, seed int64) []byte {
	m := onnxtest.MLPModel(gIn, gHidden, gOut, seed)
	g := m.Graph
	last := &g.Nodes[len(g.Nodes)-1]
	last.Outputs = []string{"pre_reshape"}
	g.Initializers = append(g.Initializers, &onnx.Tensor{Name: "fixed_shape", DataType: onnx.Int64, Dims: []int64{2}, Data: []int64{1, gOut}})
	g.Nodes = append(g.Nodes, onnx.Node{Name: "reshape", OpType: "Reshape", Inputs: []string{"pre_reshape", "fixed_shape"}, Outputs: []string{"output"}})
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ortServer is a Server over a scoring registry with ONNX Runtime that
// also records the versions it was asked to load.
type ortServer struct {
	reg *scoring.Registry
	log *slog.Logger

	mu    sync.Mutex
	loads []uint32
}

func newORTServer(t *testing.T) *ortServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	return &ortServer{reg: reg, log: log}
}

func (s *ortServer) Load(ctx context.Context, spec *agentv1.DeploymentSpec, path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads = append(s.loads, spec.GetModel().GetVersion())
	r, err := ort.Open(path, ort.Config{}, s.log)
	if err != nil {
		return err
	}
	_, err = s.reg.Swap(ctx, spec.GetName(), strconv.FormatUint(uint64(spec.GetModel().GetVersion()), 10), r)
	return err
}

func (s *ortServer) Unload(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.reg.Unload(ctx, name, "")
	if errors.Is(err, scoring.ErrModelNotFound) {
		return nil
	}
	return err
}

func (s *ortServer) loaded() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.loads...)
}

// infer sends a batch of rows to the current version of name.
func (s *ortServer) infer(name string, rows int) ([]float32, error) {
	v, err := s.reg.Acquire(name, "")
	if err != nil {
		return nil, err
	}
	defer v.Release()
	x := make([]float32, rows*gIn)
	for i := range x {
		x[i] = float32(i%7) - 2.5
	}
	out, err := v.Infer(context.Background(), []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{int64(rows), gIn}, Data: x}})
	if err != nil {
		return nil, err
	}
	return out[0].Data.([]float32), nil
}

// checkAnswer asserts that name answers a batch of rows as the MLP of seed.
func (s *ortServer) checkAnswer(t *testing.T, name string, rows int, seed int64) {
	t.Helper()
	got, err := s.infer(name, rows)
	if err != nil {
		t.Fatalf("infer %s: %v", name, err)
	}
	x := make([]float32, rows*gIn)
	for i := range x {
		x[i] = float32(i%7) - 2.5
	}
	want := onnxtest.MLPOutput(gIn, gHidden, gOut, seed, x)
	if len(got) != len(want) {
		t.Fatalf("%s answered %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Fatalf("%s answered %v, want %v (the model of seed %d)", name, got, want, seed)
		}
	}
}

func guardConfig(t *testing.T, url, dir string, srv *ortServer) Config {
	cfg := testConfig(t, url, dir)
	cfg.Stats = srv.reg.Stats
	cfg.TelemetryInterval = time.Hour // the test reads the event queue itself
	return cfg
}

func guarded(name string, ref *agentv1.ModelRef, rule string, probation, minRequests uint32) *agentv1.DeploymentSpec {
	return &agentv1.DeploymentSpec{Name: name, Model: ref,
		Guard: &agentv1.GuardRules{RollbackIf: rule, ProbationSeconds: probation, MinRequests: minRequests}}
}

// onProbation reports whether deployment name is on probation.
func (a *Agent) onProbation(name string) bool {
	a.guard.mu.Lock()
	defer a.guard.mu.Unlock()
	return a.guard.probation[name] != nil
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", guard, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func queuedEvents(a *Agent) []*agentv1.AgentEvent {
	a.evMu.Lock()
	defer a.evMu.Unlock()
	return append([]*agentv1.AgentEvent(nil), a.events...)
}

func TestGuardRollsBackFailingVersion(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	srv := newORTServer(t)
	v1 := hub.AddModel("digits", 1, goodModel(1), 64*1024)
	v2 := hub.AddModel("digits", 2, brokenModel(t, 2), 64*1024)
	other := hub.AddModel("other", 1, goodModel(7), 64*1024)
	cfg := guardConfig(t, b.URL, dir, srv)
	cfg.KeepModels = -1 // the cache keeps nothing unused: v1 must stay pinned by the probation
	a, stop := startAgent(t, cfg, srv)

	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "digits", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	srv.checkAnswer(t, "digits", 2, 1)

	rule := "error_rate > 0.5 or latency_p99 > 1m"
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{guarded("digits", v2, rule, 3600, 10)}})
	hub.WaitReported(guard, "digits v2 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	if !a.onProbation("digits") {
		t.Fatal("v2 has guard rules and replaced v1, but is not on probation")
	}
	if _, err := os.Stat(filepath.Join(dir, "models", v1.Sha256)); err != nil {
		t.Fatalf("v1's model file was not kept during probation (KeepModels -1): %v", err)
	}
	// Fewer than min_requests failures: no verdict yet.
	for range 9 {
		if _, err := srv.infer("digits", 2); err == nil {
			t.Fatal("the broken v2 answered a batch of 2")
		}
	}
	// A guard tick would roll back now if min_requests were ignored; the
	// tenth failure makes the window eligible.
	if _, err := srv.infer("digits", 2); err == nil {
		t.Fatal("the broken v2 answered a batch of 2")
	}
	r := hub.WaitReported(guard, "digits rolled back to v1", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_ROLLED_BACK, 1)
	})
	st := dep(r, "digits")
	if st.RolledBackVersion != 2 || st.RolledBackSha256 != v2.Sha256 || st.ModelSha256 != v1.Sha256 ||
		!strings.Contains(st.Error, "error_rate 1 > 0.5") || !strings.Contains(st.Error, "from version 2 to 1") {
		t.Fatalf("rolled-back status %v", st)
	}
	srv.checkAnswer(t, "digits", 2, 1) // v1 serves again, correctly
	if a.onProbation("digits") {
		t.Error("still on probation after the rollback")
	}
	var ev *agentv1.AgentEvent
	for _, e := range queuedEvents(a) {
		if e.GetKind() == "rollback" {
			ev = e
		}
	}
	if ev == nil || ev.Deployment != "digits" || ev.Attrs["from_version"] != "2" || ev.Attrs["to_version"] != "1" ||
		ev.Attrs["rule"] != rule || ev.Attrs["from_sha256"] != v2.Sha256 || !strings.Contains(ev.Attrs["reason"], "error_rate") {
		t.Fatalf("rollback event %v", ev)
	}

	// A reconnect retries failed work; a rolled-back version is not retried.
	loadsBefore := len(srv.loaded())
	if err := b.Kick("edge-1"); err != nil {
		t.Fatal(err)
	}
	hub.ClearReported()
	hub.WaitReported(guard, "report after reconnect", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_ROLLED_BACK, 1)
	})

	// Restart: the serving record says v1, the rollback record says v2 is
	// not to be deployed. A later generation that adds another deployment
	// proves the reconcile went past "digits" without loading v2.
	stop()
	srv2 := newORTServer(t)
	a2, _ := startAgent(t, guardConfig(t, b.URL, dir, srv2), srv2)
	hub.ClearReported()
	hub.WaitReported(guard, "digits still rolled back after restart", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_ROLLED_BACK, 1)
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 3, Deployments: []*agentv1.DeploymentSpec{
		guarded("digits", v2, rule, 3600, 10), deployment("other", other)}})
	r = hub.WaitReported(guard, "other serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 3, "other", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	if st := dep(r, "digits"); st.GetState() != agentv1.DeploymentStatus_STATE_ROLLED_BACK || st.GetModelVersion() != 1 || st.GetRolledBackVersion() != 2 {
		t.Fatalf("digits after restart: %v", st)
	}
	if got := srv.loaded(); len(got) != loadsBefore {
		t.Errorf("first agent loaded %v after the rollback", got[loadsBefore:])
	}
	if got := srv2.loaded(); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Errorf("after restart the server loaded versions %v, want [1 1] (digits v1 restored, other v1)", got)
	}
	srv2.checkAnswer(t, "digits", 2, 1)

	// Naming another version clears the record: v3 deploys.
	v3 := hub.AddModel("digits", 3, goodModel(3), 64*1024)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{
		guarded("digits", v3, rule, 3600, 10), deployment("other", other)}})
	r = hub.WaitReported(guard, "digits v3 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 4, "digits", agentv1.DeploymentStatus_STATE_SERVING, 3)
	})
	if st := dep(r, "digits"); st.RolledBackVersion != 0 || st.Error != "" {
		t.Errorf("v3 serving but status keeps the rollback: %v", st)
	}
	srv2.checkAnswer(t, "digits", 2, 3)
	if !a2.onProbation("digits") {
		t.Error("v3 replaced v1 with guard rules but is not on probation")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "rolledback.pb")); err != nil || len(b) != 0 {
		t.Errorf("rollback record after v3 deployed: %d bytes, %v; want empty", len(b), err)
	}
}

func TestGuardGoodVersionPassesProbation(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	srv := newORTServer(t)
	v1 := hub.AddModel("digits", 1, goodModel(1), 64*1024)
	v2 := hub.AddModel("digits", 2, goodModel(2), 64*1024)
	a, _ := startAgent(t, guardConfig(t, b.URL, t.TempDir(), srv), srv)

	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "digits", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	// The rule holds for any failure at all; v2 never fails.
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{guarded("digits", v2, "errors > 0", 1, 5)}})
	hub.WaitReported(guard, "digits v2 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	for range 20 {
		srv.checkAnswer(t, "digits", 2, 2)
	}
	waitCond(t, "probation of v2 to end", func() bool { return !a.onProbation("digits") })
	st := dep(a.Status(), "digits")
	if st.GetState() != agentv1.DeploymentStatus_STATE_SERVING || st.GetModelVersion() != 2 {
		t.Fatalf("after probation: %v", st)
	}
	srv.checkAnswer(t, "digits", 2, 2)
	if got := srv.loaded(); len(got) != 2 {
		t.Errorf("server loads %v, want [1 2]", got)
	}
	for _, e := range queuedEvents(a) {
		if e.GetKind() == "rollback" {
			t.Errorf("rollback event for a good version: %v", e)
		}
	}
}

func TestGuardProbationResumesAfterRestart(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	srv := newORTServer(t)
	v1 := hub.AddModel("digits", 1, goodModel(1), 64*1024)
	v2 := hub.AddModel("digits", 2, brokenModel(t, 2), 64*1024)
	cfg := guardConfig(t, b.URL, dir, srv)
	cfg.KeepModels = -1
	a, stop := startAgent(t, cfg, srv)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "digits", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{guarded("digits", v2, "error_rate >= 50%", 3600, 5)}})
	hub.WaitReported(guard, "digits v2 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	if !a.onProbation("digits") {
		t.Fatal("v2 not on probation")
	}
	stop() // restart before any request reached v2

	srv2 := newORTServer(t)
	cfg2 := guardConfig(t, b.URL, dir, srv2)
	cfg2.KeepModels = -1
	a2, _ := startAgent(t, cfg2, srv2)
	waitCond(t, "v2 restored and back on probation", func() bool { return a2.onProbation("digits") })
	hub.ClearReported()
	// The reconcile after the restart keeps v1's file (pinned by the
	// resumed probation) even though the cache keeps nothing unused.
	hub.WaitReported(guard, "digits v2 serving after restart", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	for range 5 {
		if _, err := srv2.infer("digits", 2); err == nil {
			t.Fatal("the broken v2 answered a batch of 2")
		}
	}
	r := hub.WaitReported(guard, "digits rolled back after restart", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_ROLLED_BACK, 1)
	})
	if st := dep(r, "digits"); st.RolledBackVersion != 2 || !strings.Contains(st.Error, "error_rate 1 >= 50%") {
		t.Fatalf("status %v", st)
	}
	srv2.checkAnswer(t, "digits", 2, 1)
	if got := srv2.loaded(); len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Errorf("after restart the server loaded %v, want [2 1] (v2 restored, v1 rolled back to)", got)
	}
}

// A latency rule no real request can meet (p99 above 1ns) stands for a
// version too slow for its rule, without timing anything in the test.
func TestGuardLatencyRule(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	srv := newORTServer(t)
	v1 := hub.AddModel("digits", 1, goodModel(1), 64*1024)
	v2 := hub.AddModel("digits", 2, goodModel(2), 64*1024)
	startAgent(t, guardConfig(t, b.URL, t.TempDir(), srv), srv)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "digits", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{guarded("digits", v2, "error_rate > 0.5 or latency_p99 > 1ns", 3600, 5)}})
	hub.WaitReported(guard, "digits v2 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	for range 5 {
		srv.checkAnswer(t, "digits", 1, 2) // v2 answers correctly, just "too slowly"
	}
	r := hub.WaitReported(guard, "digits rolled back", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "digits", agentv1.DeploymentStatus_STATE_ROLLED_BACK, 1)
	})
	if st := dep(r, "digits"); !strings.Contains(st.Error, "latency_p99 ") || !strings.Contains(st.Error, "> 1ns") {
		t.Fatalf("reason %q, want the latency comparison", st.Error)
	}
	srv.checkAnswer(t, "digits", 1, 1)
}
