package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/fleet"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

var _ Pusher = (*fleet.Fleet)(nil)

// recorder is a Pusher that records what it is given.
type recorder struct {
	mu      sync.Mutex
	desired map[string][]*agentv1.DesiredState // agent → every push, in order
	removed []string
	missing map[string]bool // sha256s ModelRef refuses
}

func newRecorder() *recorder {
	return &recorder{desired: map[string][]*agentv1.DesiredState{}, missing: map[string]bool{}}
}

func (p *recorder) SetDesired(_ context.Context, agent string, d *agentv1.DesiredState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.desired[agent]; len(h) > 0 && h[len(h)-1].GetGeneration() > d.GetGeneration() {
		return fmt.Errorf("stale generation %d after %d", d.GetGeneration(), h[len(h)-1].GetGeneration())
	}
	p.desired[agent] = append(p.desired[agent], d)
	return nil
}

func (p *recorder) RemoveAgent(_ context.Context, agent string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removed = append(p.removed, agent)
	return nil
}

func (p *recorder) ModelRef(_ context.Context, name string, version uint32, sha string) (*agentv1.ModelRef, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.missing[sha] {
		return nil, fmt.Errorf("blob %s: %w", sha, hub.ErrNotFound)
	}
	return &agentv1.ModelRef{Name: name, Version: version, Sha256: sha, Size: 10, ChunkSize: 256 << 10, ChunkSha256: []string{sha}}, nil
}

// last returns the agent's last pushed state and how many pushes it got.
func (p *recorder) last(agent string) (*agentv1.DesiredState, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.desired[agent]
	if len(h) == 0 {
		return nil, 0
	}
	return h[len(h)-1], len(h)
}

func names(d *agentv1.DesiredState) []string {
	var out []string
	for _, s := range d.GetDeployments() {
		out = append(out, fmt.Sprintf("%s=%s:%d", s.GetName(), s.GetModel().GetName(), s.GetModel().GetVersion()))
	}
	return out
}

type env struct {
	t     testing.TB
	path  string
	store *sqlite.Store
}

func openStore(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newEnv(t testing.TB) *env {
	path := filepath.Join(t.TempDir(), "hub.db")
	e := &env{t: t, path: path, store: openStore(t, path)}
	t.Cleanup(func() { e.store.Close() })
	ctx := context.Background()
	if _, err := e.store.CreateWorkspace(ctx, "w", ""); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := e.store.CreateModelVersion(ctx, "w", hub.ModelVersionCreate{Name: "clf",
			Blob: hub.Blob{SHA256: fmt.Sprintf("%064x", i), Size: 10}, IRVersion: 8, Opset: 17}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) enroll(name string, labels map[string]string) string {
	e.t.Helper()
	ctx := context.Background()
	tok, err := e.store.CreateJoinToken(ctx, nil, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	a, _, err := e.store.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: name, Labels: labels,
		Capabilities: hub.Capabilities{Kind: hub.KindEdge, OS: "linux", Arch: "amd64", CPUs: 1}})
	if err != nil {
		e.t.Fatal(err)
	}
	return a.ID
}

func (e *env) deploy(dc hub.DeploymentCreate) {
	e.t.Helper()
	s, err := dc.Spec()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.CreateDeployment(context.Background(), "w", s); err != nil {
		e.t.Fatal(err)
	}
}

func TestSyncSelectorsAndGenerations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.enroll("a", map[string]string{"zone": "eu", "tier": "gpu"})
	b := e.enroll("b", map[string]string{"zone": "eu"})
	c := e.enroll("c", map[string]string{"zone": "us"})
	e.deploy(hub.DeploymentCreate{Name: "eu-all", Model: "clf:1", Selector: map[string]string{"zone": "eu"}})
	e.deploy(hub.DeploymentCreate{Name: "eu-gpu", Model: "clf:2", Selector: map[string]string{"zone": "eu", "tier": "gpu"},
		Options: hub.RuntimeOptions{MaxBatch: 4, MaxDelay: "1500us", AllowCPUFallback: true}})
	e.deploy(hub.DeploymentCreate{Name: "by-id", Model: "clf:2", Agents: []string{c}})

	p := newRecorder()
	r := New(Config{}, e.store, nil)
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent string
		want  []string
	}{
		{a, []string{"eu-all=clf:1", "eu-gpu=clf:2"}},
		{b, []string{"eu-all=clf:1"}},
		{c, []string{"by-id=clf:2"}},
	} {
		d, n := p.last(tc.agent)
		if n != 1 || d.GetGeneration() != 1 || fmt.Sprint(names(d)) != fmt.Sprint(tc.want) {
			t.Errorf("agent %s: %d pushes, last %v gen %d; want %v at generation 1", tc.agent, n, names(d), d.GetGeneration(), tc.want)
		}
	}
	d, _ := p.last(a)
	if o := d.GetDeployments()[1].GetOptions(); o.GetMaxBatchSize() != 4 || o.GetMaxQueueDelayUs() != 1500 || !o.GetAllowCpuFallback() {
		t.Errorf("options: %v", o)
	}

	// Nothing changed: no new generation, nothing pushed again.
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, n := p.last(a); n != 1 {
		t.Errorf("an unchanged state was pushed again (%d pushes)", n)
	}

	// An agent enrolling later with matching labels is reached; the others
	// are untouched.
	late := e.enroll("late", map[string]string{"zone": "eu"})
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if d, n := p.last(late); n != 1 || fmt.Sprint(names(d)) != "[eu-all=clf:1]" {
		t.Errorf("late agent: %d pushes, %v", n, names(d))
	}
	if _, n := p.last(b); n != 1 {
		t.Errorf("b pushed again (%d)", n)
	}

	// Deleting a deployment gives its agents a new generation without it.
	if err := e.store.DeleteDeployment(ctx, "w", "eu-gpu"); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if d, n := p.last(a); n != 2 || d.GetGeneration() != 2 || fmt.Sprint(names(d)) != "[eu-all=clf:1]" {
		t.Errorf("after delete: %d pushes, gen %d, %v", n, d.GetGeneration(), names(d))
	}

	// Revoking an agent removes it from the pusher.
	if _, err := e.store.RevokeAgent(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.removed) != fmt.Sprint([]string{c}) {
		t.Errorf("removed %v, want [%s]", p.removed, c)
	}
}

func TestGenerationSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.enroll("a", map[string]string{"zone": "eu"})
	e.deploy(hub.DeploymentCreate{Name: "d", Model: "clf:1", Selector: map[string]string{"zone": "eu"}})
	p := newRecorder()
	if err := New(Config{}, e.store, nil).Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	dep, err := e.store.GetDeployment(ctx, "w", "d")
	if err != nil {
		t.Fatal(err)
	}
	u, err := hub.DeploymentUpdate{Model: "clf:2"}.Apply(dep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateDeployment(ctx, "w", u); err != nil {
		t.Fatal(err)
	}
	if err := New(Config{}, e.store, nil).Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if d, _ := p.last(a); d.GetGeneration() != 2 {
		t.Fatalf("after update: generation %d, want 2", d.GetGeneration())
	}

	// A hub restart: a new store and a new rollout (the fleet forgot
	// everything) push the same state at the same generation ...
	e.store.Close()
	e.store = openStore(t, e.path)
	p2 := newRecorder()
	r := New(Config{}, e.store, nil)
	if err := r.Sync(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if d, n := p2.last(a); n != 1 || d.GetGeneration() != 2 || fmt.Sprint(names(d)) != "[d=clf:2]" {
		t.Fatalf("after restart: %d pushes, gen %d, %v", n, d.GetGeneration(), names(d))
	}
	// ... and the next change continues from there.
	if err := e.store.DeleteDeployment(ctx, "w", "d"); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if d, _ := p2.last(a); d.GetGeneration() != 3 || len(d.GetDeployments()) != 0 {
		t.Fatalf("after delete: gen %d, %v", d.GetGeneration(), names(d))
	}
}

func TestSyncKeepsStateWhenModelRefFails(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.enroll("a", map[string]string{"zone": "eu"})
	b := e.enroll("b", map[string]string{"zone": "us"})
	e.deploy(hub.DeploymentCreate{Name: "eu", Model: "clf:1", Selector: map[string]string{"zone": "eu"}})
	e.deploy(hub.DeploymentCreate{Name: "us", Model: "clf:2", Selector: map[string]string{"zone": "us"}})
	p := newRecorder()
	p.missing[fmt.Sprintf("%064x", 1)] = true
	r := New(Config{}, e.store, nil)
	if err := r.Sync(ctx, p); err == nil {
		t.Fatal("a missing blob was not reported")
	}
	if _, n := p.last(a); n != 0 {
		t.Errorf("agent a got a state without its deployment")
	}
	if d, n := p.last(b); n != 1 || fmt.Sprint(names(d)) != "[us=clf:2]" {
		t.Errorf("agent b: %d pushes, %v", n, names(d))
	}
	p.missing = map[string]bool{}
	if err := r.Sync(ctx, p); err != nil {
		t.Fatal(err)
	}
	if d, n := p.last(a); n != 1 || d.GetGeneration() != 1 {
		t.Errorf("agent a after the blob is back: %d pushes, gen %d", n, d.GetGeneration())
	}
}

func TestRunSyncsOnNotifyAndOnlinePresence(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t)
	e.deploy(hub.DeploymentCreate{Name: "d", Model: "clf:1", Selector: map[string]string{"zone": "eu"}})
	first := e.enroll("first", map[string]string{"zone": "eu"})
	p := newRecorder()
	r := New(Config{RetryInterval: time.Hour}, e.store, nil)
	done := make(chan struct{})
	go func() { _ = r.Run(ctx, p); close(done) }()
	wait := func(agent string) {
		t.Helper()
		for {
			if _, n := p.last(agent); n == 1 {
				return
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-done:
				t.Fatal("Run returned")
			}
		}
	}
	wait(first) // the sync at start
	late := e.enroll("late", map[string]string{"zone": "eu"})
	// The agent comes online: the rollout has not pushed to it, so it syncs.
	r.Presence(ctx, late, &agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE})
	wait(late)
	// A deployment change announced with Notify.
	e.deploy(hub.DeploymentCreate{Name: "d2", Model: "clf:2", Agents: []string{first}})
	r.Notify()
	for {
		if d, _ := p.last(first); d.GetGeneration() == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestTargets(t *testing.T) {
	d := hub.Deployment{Name: "fraud", Version: 2, Selector: map[string]string{"zone": "eu"}}
	agents := []hub.Agent{
		{ID: "b", Labels: map[string]string{"zone": "eu"}, Endpoint: "http://10.0.0.2:8080"},
		{ID: "a", Labels: map[string]string{"zone": "eu"}},
		{ID: "c", Labels: map[string]string{"zone": "us"}},
		{ID: "r", Labels: map[string]string{"zone": "eu"}, State: hub.AgentRevoked},
		{ID: "old", Labels: map[string]string{"zone": "eu"}},
		{ID: "bad", Labels: map[string]string{"zone": "eu"}},
	}
	reports := map[string]*agentv1.ReportedState{
		"a": {Endpoint: "http://10.0.0.1:8080/", Deployments: []*agentv1.DeploymentStatus{
			{Name: "other", State: agentv1.DeploymentStatus_STATE_FAILED},
			{Name: "fraud", State: agentv1.DeploymentStatus_STATE_SERVING, ModelVersion: 2}}},
		"old": {Deployments: []*agentv1.DeploymentStatus{{Name: "fraud", State: agentv1.DeploymentStatus_STATE_SERVING, ModelVersion: 1}}},
		"bad": {Deployments: []*agentv1.DeploymentStatus{{Name: "fraud", State: agentv1.DeploymentStatus_STATE_FAILED, ModelVersion: 2, Error: "load: bad opset"}}},
	}
	got := Targets(d, agents, reports)
	want := []hub.DeploymentTarget{
		{Agent: "a", State: hub.TargetServing, ModelVersion: 2, Endpoint: "http://10.0.0.1:8080/v2/models/fraud"},
		{Agent: "b", State: hub.TargetPending, Endpoint: "http://10.0.0.2:8080/v2/models/fraud"},
		{Agent: "bad", State: hub.TargetFailed, ModelVersion: 2, Error: "load: bad opset"},
		{Agent: "old", State: hub.TargetPending, ModelVersion: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets:\n got %+v\nwant %+v", got, want)
	}
}

// interleaved is a Store whose first DesiredRecords read is followed, before
// it returns, by between: another writer recording generations while the
// caller holds a read of the records.
type interleaved struct {
	*sqlite.Store
	once    sync.Once
	between func()
}

func (s *interleaved) DesiredRecords(ctx context.Context) (map[string]hub.DesiredRecord, error) {
	recs, err := s.Store.DesiredRecords(ctx)
	s.once.Do(s.between)
	return recs, err
}

// TestConcurrentRolloutsShareGenerations runs two Rollouts over one
// database, as during a hub restart where the old hub's last sync overlaps
// the new hub's first: the second writer records generations between the
// first's read of the records and its write. The first must neither fail
// ("generation 1 is not above the stored 1") nor hand out a generation
// that does not match the stored content.
func TestConcurrentRolloutsShareGenerations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.enroll("a", map[string]string{"zone": "eu"})
	e.deploy(hub.DeploymentCreate{Name: "d", Model: "clf:1", Selector: map[string]string{"zone": "eu"}})

	// The new hub: its own store over the same file.
	newStore := openStore(t, e.path)
	t.Cleanup(func() { newStore.Close() })
	pNew, pOld := newRecorder(), newRecorder()
	rNew := New(Config{}, newStore, nil)

	for i, tc := range []struct {
		name   string
		change func()
		gen    uint64
		want   string
	}{
		{"first state", func() {}, 1, "[d=clf:1]"},
		{"after an update", func() {
			dep, err := e.store.GetDeployment(ctx, "w", "d")
			if err != nil {
				t.Fatal(err)
			}
			u, err := hub.DeploymentUpdate{Model: "clf:2"}.Apply(dep)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.UpdateDeployment(ctx, "w", u); err != nil {
				t.Fatal(err)
			}
		}, 2, "[d=clf:2]"},
	} {
		tc.change()
		var newErr error
		old := New(Config{}, &interleaved{Store: e.store, between: func() { newErr = rNew.Sync(ctx, pNew) }}, nil)
		if err := old.Sync(ctx, pOld); err != nil {
			t.Fatalf("%s: the old hub's sync: %v", tc.name, err)
		}
		if newErr != nil {
			t.Fatalf("%s: the new hub's sync: %v", tc.name, newErr)
		}
		for who, p := range map[string]*recorder{"old": pOld, "new": pNew} {
			d, n := p.last(a)
			if n != i+1 || d.GetGeneration() != tc.gen || fmt.Sprint(names(d)) != tc.want {
				t.Errorf("%s: %s hub pushed %d states, last gen %d %v; want %d, gen %d %s", tc.name, who, n, d.GetGeneration(), names(d), i+1, tc.gen, tc.want)
			}
		}
		recs, err := e.store.DesiredRecords(ctx)
		if err != nil || recs[a].Generation != tc.gen {
			t.Fatalf("%s: stored %+v, %v; want generation %d", tc.name, recs[a], err, tc.gen)
		}
	}
}
