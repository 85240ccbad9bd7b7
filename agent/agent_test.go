package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/testhub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

const guard = 30 * time.Second // deadlock guard only, never a speed assertion

type loadCall struct {
	name    string
	version uint32
	path    string
	sha     string // digest of the file at path when Load was called
}

// recorder is a Server that records calls and "serves" what it loaded.
type recorder struct {
	mu       sync.Mutex
	loads    []loadCall
	unloads  []string
	current  map[string]uint32
	failNext error // returned by the next Load, then cleared
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{current: map[string]uint32{}, changed: make(chan struct{})}
}

func (r *recorder) signalLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) Load(_ context.Context, spec *agentv1.DeploymentSpec, path string) error {
	name, version := spec.GetName(), spec.GetModel().GetVersion()
	b, err := os.ReadFile(path)
	sum := sha256.Sum256(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.signalLocked()
	r.loads = append(r.loads, loadCall{name, version, path, hex.EncodeToString(sum[:])})
	if err != nil {
		return err
	}
	if f := r.failNext; f != nil {
		r.failNext = nil
		return f
	}
	r.current[name] = version
	return nil
}

func (r *recorder) Unload(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.signalLocked()
	r.unloads = append(r.unloads, name)
	delete(r.current, name)
	return nil
}

func (r *recorder) snapshot() ([]loadCall, []string, map[string]uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := map[string]uint32{}
	for k, v := range r.current {
		cur[k] = v
	}
	return append([]loadCall(nil), r.loads...), append([]string(nil), r.unloads...), cur
}

func (r *recorder) waitLoads(t *testing.T, n int) []loadCall {
	t.Helper()
	deadline := time.After(guard)
	for {
		r.mu.Lock()
		ch, got := r.changed, len(r.loads)
		r.mu.Unlock()
		if got >= n {
			l, _, _ := r.snapshot()
			return l
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d Load calls (have %d)", n, got)
		}
	}
}

func testConfig(t *testing.T, url, dir string) Config {
	return Config{
		ID: "edge-1", DataDir: dir, Broker: url, Username: testhub.Username, Password: testhub.Password,
		Endpoint:     "http://127.0.0.1:8000",
		Capabilities: &agentv1.Capabilities{Kind: "edge"},
		MinBackoff:   20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		ChunkTimeout: 2 * time.Second, RetryInterval: time.Hour,
	}
}

// startAgent runs an agent until the returned stop is called (or the test ends).
func startAgent(t *testing.T, cfg Config, srv Server) (*Agent, func()) {
	t.Helper()
	a, err := New(cfg, srv, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func modelBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func deployment(name string, ref *agentv1.ModelRef) *agentv1.DeploymentSpec {
	return &agentv1.DeploymentSpec{Name: name, Model: ref}
}

// dep finds a deployment's status in a report.
func dep(r *agentv1.ReportedState, name string) *agentv1.DeploymentStatus {
	for _, d := range r.GetDeployments() {
		if d.GetName() == name {
			return d
		}
	}
	return nil
}

func isState(r *agentv1.ReportedState, gen uint64, name string, st agentv1.DeploymentStatus_State, version uint32) bool {
	d := dep(r, name)
	return r.GetObservedGeneration() == gen && d != nil && d.GetState() == st && d.GetModelVersion() == version
}

func persistedGeneration(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "desired.pb"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeDesired(b)
	if err != nil {
		t.Fatal(err)
	}
	return d.GetGeneration()
}

func TestReconcileLifecycle(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	v1 := hub.AddModel("iris", 1, modelBytes(300*1024+5, 1), 64*1024)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v1)}})
	rec := newRecorder()
	_, _ = startAgent(t, testConfig(t, b.URL, dir), rec)

	// Desired state → download → Load with the verified file → serving.
	r := hub.WaitReported(guard, "iris v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	if r.Endpoint != "http://127.0.0.1:8000" || dep(r, "iris").ModelSha256 != v1.Sha256 {
		t.Fatalf("report %v", r)
	}
	loads, _, _ := rec.snapshot()
	if len(loads) != 1 || loads[0].name != "iris" || loads[0].version != 1 || loads[0].sha != v1.Sha256 ||
		loads[0].path != filepath.Join(dir, "models", v1.Sha256) {
		t.Fatalf("loads = %+v", loads)
	}
	if g := persistedGeneration(t, dir); g != 1 {
		t.Fatalf("persisted generation %d, want 1", g)
	}
	hub.WaitReported(guard, "a downloading report before serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_DOWNLOADING, 0)
	})

	// A corrupt chunk: failed with the reason, v1 keeps serving, v2 never loaded.
	v2 := hub.AddModel("iris", 2, modelBytes(200*1024, 2), 64*1024)
	hub.SetTamper(func(sha string, i uint32, d []byte) ([]byte, bool) {
		if sha == v2.Sha256 && i == 2 {
			d = append([]byte(nil), d...)
			d[10] ^= 0xff
		}
		return d, false
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v2)}})
	r = hub.WaitReported(guard, "iris v2 failed", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "iris", agentv1.DeploymentStatus_STATE_FAILED, 1)
	})
	if e := dep(r, "iris").Error; !strings.Contains(e, "digest mismatch") || !strings.Contains(e, "chunk 2 of 4") {
		t.Fatalf("failure reason %q does not name the corrupt chunk", e)
	}
	if loads, _, cur := rec.snapshot(); len(loads) != 1 || cur["iris"] != 1 {
		t.Fatalf("after a corrupt chunk: loads %+v, serving %v", loads, cur)
	}

	// An older generation is ignored; so is an invalid one.
	hub.PublishRaw("desired", mustMarshal(t, &agentv1.DesiredState{Generation: 1}), false)
	bad := proto.Clone(v2).(*agentv1.ModelRef)
	bad.ChunkSha256 = bad.ChunkSha256[1:]
	hub.PublishRaw("desired", mustMarshal(t, &agentv1.DesiredState{Generation: 9, Deployments: []*agentv1.DeploymentSpec{deployment("iris", bad)}}), false)
	hub.SetTamper(nil)
	hub.ClearReported()
	hub.PublishDesired(&agentv1.DesiredState{Generation: 3, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v2)}})
	hub.WaitReported(guard, "iris v2 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 3, "iris", agentv1.DeploymentStatus_STATE_SERVING, 2)
	})
	hub.WaitFor(guard, "", func(rs []*agentv1.ReportedState, _ []*agentv1.Presence) bool {
		for _, r := range rs {
			if g := r.GetObservedGeneration(); g != 2 && g != 3 {
				t.Fatalf("observed generation %d reported: an older or invalid state was applied", g)
			}
		}
		return true
	})
	loads, _, cur := rec.snapshot()
	if len(loads) != 2 || loads[1].version != 2 || loads[1].sha != v2.Sha256 || cur["iris"] != 2 {
		t.Fatalf("after fix: loads %+v, serving %v", loads, cur)
	}
	if g := persistedGeneration(t, dir); g != 3 {
		t.Fatalf("persisted generation %d, want 3", g)
	}

	// A deployment dropped from the desired state is unloaded.
	hub.PublishDesired(&agentv1.DesiredState{Generation: 4})
	hub.WaitReported(guard, "no deployments", func(r *agentv1.ReportedState) bool {
		return r.GetObservedGeneration() == 4 && len(r.GetDeployments()) == 0
	})
	if _, unloads, cur := rec.snapshot(); len(unloads) != 1 || unloads[0] != "iris" || len(cur) != 0 {
		t.Fatalf("unloads %v, serving %v", unloads, cur)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestartWithBrokerDownServesFromDisk(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	v1 := hub.AddModel("iris", 1, modelBytes(100*1024, 3), 32*1024)
	v2 := hub.AddModel("iris", 2, modelBytes(100*1024, 4), 32*1024)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v1)}})
	_, stop := startAgent(t, testConfig(t, b.URL, dir), newRecorder())
	hub.WaitReported(guard, "iris v1 serving", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	// v2 fails to download (the hub refuses): the last good version is v1.
	hub.SetTamper(func(sha string, i uint32, d []byte) ([]byte, bool) { return d[:1], sha == v2.Sha256 && i == 1 })
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v2)}})
	hub.WaitReported(guard, "iris v2 stuck downloading", func(r *agentv1.ReportedState) bool {
		return isState(r, 2, "iris", agentv1.DeploymentStatus_STATE_DOWNLOADING, 1)
	})
	stop()
	b.Stop()

	rec := newRecorder()
	a, _ := startAgent(t, testConfig(t, b.URL, dir), rec)
	loads := rec.waitLoads(t, 1)
	if loads[0].name != "iris" || loads[0].version != 1 || loads[0].sha != v1.Sha256 {
		t.Fatalf("after restart without broker, loaded %+v, want iris v1", loads)
	}
	// Restore records the status right after Load returns.
	deadline := time.Now().Add(guard)
	for {
		st := a.Status()
		if st.ObservedGeneration == 2 && dep(st, "iris").GetModelVersion() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after restart: %v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCrashMidTransferResumes(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	const chunk, stallAt = 16 * 1024, 11
	v1 := hub.AddModel("iris", 1, modelBytes(30*chunk+100, 5), chunk)
	stalled := make(chan struct{})
	var once sync.Once
	hub.SetTamper(func(_ string, i uint32, d []byte) ([]byte, bool) {
		if i >= stallAt {
			once.Do(func() { close(stalled) })
			return nil, true
		}
		return d, false
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v1)}})
	cfg := testConfig(t, b.URL, dir)
	cfg.ChunkTimeout = guard // the first agent must stay stuck, not give up
	cfg.ModelSyncBytes = 1   // checkpoint every chunk, so the test sees where the transfer is
	_, stop := startAgent(t, cfg, newRecorder())
	select {
	case <-stalled:
	case <-time.After(guard):
		t.Fatal("transfer never reached the stall point")
	}
	// Chunks below stallAt are answered in order before stallAt is asked
	// for; wait until the agent has them all on disk, then "crash" it.
	waitPartial(t, dir, v1.Sha256, stallAt)
	stop()

	hub.SetTamper(nil)
	hub.ResetCounts()
	rec := newRecorder()
	_, _ = startAgent(t, testConfig(t, b.URL, dir), rec)
	hub.WaitReported(guard, "iris serving after resume", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	for _, r := range hub.Requests() {
		if r.Index < stallAt {
			t.Fatalf("chunk %d requested again after the restart (resume point %d)", r.Index, stallAt)
		}
	}
	if loads := rec.waitLoads(t, 1); loads[0].sha != v1.Sha256 {
		t.Fatalf("loaded %+v", loads)
	}
}

// waitPartial waits until the partial transfer of sha records next ≥ n.
func waitPartial(t *testing.T, dir, sha string, n uint32) {
	t.Helper()
	p := filepath.Join(dir, "models", "partial", sha+".progress")
	deadline := time.Now().Add(guard)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(p); err == nil && strings.HasSuffix(strings.TrimSpace(string(b)), " "+strconv.FormatUint(uint64(n), 10)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("partial transfer never reached chunk %d", n)
}

func TestRetryAfterLoadFailure(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	v1 := hub.AddModel("iris", 1, modelBytes(10*1024, 6), 4096)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v1)}})
	rec := newRecorder()
	rec.failNext = errors.New("warm-up inference failed")
	cfg := testConfig(t, b.URL, t.TempDir())
	cfg.RetryInterval = 50 * time.Millisecond
	_, _ = startAgent(t, cfg, rec)
	r := hub.WaitReported(guard, "iris failed", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_FAILED, 0)
	})
	if !strings.Contains(dep(r, "iris").Error, "warm-up inference failed") {
		t.Fatalf("reason %q", dep(r, "iris").Error)
	}
	hub.WaitReported(guard, "iris serving after retry", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	if reqs := hub.Requests(); len(reqs) == 0 || len(hub.Served()) != 3 {
		t.Fatalf("the retry downloaded again: served %v", hub.Served())
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{ID: "a", DataDir: t.TempDir(), Broker: "tcp://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		mut  func(c *Config)
		srv  Server
	}{
		{"bad id", func(c *Config) { c.ID = "Edge_1" }, newRecorder()},
		{"no data dir", func(c *Config) { c.DataDir = "" }, newRecorder()},
		{"no broker", func(c *Config) { c.Broker = "" }, newRecorder()},
		{"heartbeat too short", func(c *Config) { c.Heartbeat = time.Millisecond }, newRecorder()},
		{"nil server", func(c *Config) {}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mut(&c)
			if _, err := New(c, tc.srv, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(ok, newRecorder(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeatRepublishesState(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	hub.PublishDesired(&agentv1.DesiredState{Generation: 5})
	cfg := testConfig(t, b.URL, t.TempDir())
	cfg.Heartbeat = time.Second
	_, _ = startAgent(t, cfg, newRecorder())
	hub.WaitReported(guard, "generation 5", func(r *agentv1.ReportedState) bool { return r.ObservedGeneration == 5 })
	hub.ClearReported()
	// Nothing changes any more; reports keep coming.
	hub.WaitFor(guard, "two heartbeats", func(rs []*agentv1.ReportedState, _ []*agentv1.Presence) bool {
		return len(rs) >= 2 && rs[0].ObservedGeneration == 5 && rs[1].ObservedGeneration == 5
	})
}

func TestBrokerRestartMidTransferResumes(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	const chunk, stallAt = 16 * 1024, 9
	v1 := hub.AddModel("iris", 1, modelBytes(25*chunk+3, 7), chunk)
	stalled := make(chan struct{})
	var once sync.Once
	hub.SetTamper(func(_ string, i uint32, d []byte) ([]byte, bool) {
		if i >= stallAt {
			once.Do(func() { close(stalled) })
			return nil, true
		}
		return d, false
	})
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("iris", v1)}})
	dir := t.TempDir()
	cfg := testConfig(t, b.URL, dir)
	cfg.ChunkTimeout = time.Second // requests sent while the test hub reconnects are asked again
	rec := newRecorder()
	_, _ = startAgent(t, cfg, rec)
	select {
	case <-stalled:
	case <-time.After(guard):
		t.Fatal("transfer never reached the stall point")
	}
	waitPartial(t, dir, v1.Sha256, stallAt)
	hub.SetTamper(nil)
	hub.ResetCounts()
	b.Restart()
	hub.WaitReported(guard, "iris serving after the broker came back", func(r *agentv1.ReportedState) bool {
		return isState(r, 1, "iris", agentv1.DeploymentStatus_STATE_SERVING, 1)
	})
	for _, r := range hub.Requests() {
		if r.Index < stallAt {
			t.Fatalf("chunk %d requested again after the reconnect (resume point %d)", r.Index, stallAt)
		}
	}
	if loads := rec.waitLoads(t, 1); loads[0].sha != v1.Sha256 {
		t.Fatalf("loaded %+v", loads)
	}
}
