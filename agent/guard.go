package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	guardrule "github.com/atelier-ml/atelier/internal/guard"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// Guard rules (agentv1.GuardRules). After a deployment switches from one
// version to another whose spec carries rollback_if, the agent puts the new
// version on probation: every guardInterval it takes the new load's own
// scoring totals (Config.Stats, the entry whose ID is that load's), subtracts
// the totals taken right after the switch, and once the window holds
// min_requests requests evaluates the rule (internal/guard). If it holds
// before probation_seconds have passed, the agent loads the spec it served
// before, reports STATE_ROLLED_BACK with the reason, queues a "rollback"
// event and records the rolled-back (deployment, digest) in
// DATA/rolledback.pb, so that neither a retry, a reconnect nor a restart
// deploys it again until the desired state names another version. The
// previous model file stays pinned in the cache during probation.
//
// Limits: a first deployment (nothing served before) has nothing to roll
// back to and is not put on probation; a probation cut by a restart
// resumes (DATA/probation.json) on a window that starts again at the
// restart, until the original end; without Config.Stats nothing is
// evaluated.
const (
	guardInterval           = time.Second
	defaultGuardMinRequests = 20
	defaultProbation        = 10 * time.Minute
)

func (a *Agent) rolledBackPath() string { return filepath.Join(a.cfg.DataDir, "rolledback.pb") }

// guardState is the agent's guard bookkeeping. Lock order: Agent.mu may be
// held when mu is taken, never the reverse; srvMu is taken before either.
type guardState struct {
	// srvMu serializes what changes the served version of a deployment
	// (reconcile's Load and Unload, the guard's rollback) with the serving
	// map updates that follow.
	srvMu sync.Mutex

	mu         sync.Mutex
	loaded     map[string]*agentv1.DeploymentSpec // last spec loaded per deployment
	probation  map[string]*probation
	rolledBack map[string]rolledBack
}

type probation struct {
	spec, prev  *agentv1.DeploymentSpec
	prevSha     string
	rule        *guardrule.Rule
	loadID      uint64
	base        scoring.VersionStats
	until       time.Time
	minRequests uint64
}

// rolledBack is a version the guard switched away from.
type rolledBack struct {
	version     uint32
	sha, reason string
	// prevVersion/prevSha were served instead.
	prevVersion uint32
	prevSha     string
}

func newGuardState() *guardState {
	return &guardState{loaded: map[string]*agentv1.DeploymentSpec{}, probation: map[string]*probation{},
		rolledBack: map[string]rolledBack{}}
}

// guardRolledBack reports whether deployment name at digest sha was rolled
// back (and so is not to be deployed). Called with Agent.mu held.
func (g *guardState) isRolledBack(name, sha string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	rb, ok := g.rolledBack[name]
	return ok && rb.sha == sha
}

// guardSkip is deploy's first step: if dep names a version rolled back it
// reports STATE_ROLLED_BACK again and returns true; if it names another
// version, the deployment's rollback record is dropped.
func (a *Agent) guardSkip(ctx context.Context, dep *agentv1.DeploymentSpec) bool {
	name, sha := dep.GetName(), dep.GetModel().GetSha256()
	a.guard.mu.Lock()
	rb, ok := a.guard.rolledBack[name]
	if ok && rb.sha != sha {
		delete(a.guard.rolledBack, name)
	}
	a.guard.mu.Unlock()
	if !ok {
		return false
	}
	if rb.sha != sha {
		a.log.Info("desired state names another version; rollback record dropped", "deployment", name,
			"rolled_back_version", rb.version, "version", dep.GetModel().GetVersion())
		if err := a.saveRolledBack(); err != nil {
			a.log.Error("persist rollback record", "error", err)
		}
		return false
	}
	a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
		st.State, st.Error, st.Downloaded = agentv1.DeploymentStatus_STATE_ROLLED_BACK, rb.reason, 0
		st.RolledBackVersion, st.RolledBackSha256 = rb.version, rb.sha
	})
	return true
}

// guardLoaded is called by deploy, with srvMu held, after dep was loaded
// and switched to while prev (hadPrev: anything) was serving. It starts
// probation if dep has rules and something else served before.
func (a *Agent) guardLoaded(dep *agentv1.DeploymentSpec, prev served, hadPrev bool) {
	name := dep.GetName()
	a.mu.Lock()
	if st := a.status[name]; st != nil {
		st.RolledBackVersion, st.RolledBackSha256 = 0, ""
	}
	a.mu.Unlock()
	g := a.guard
	g.mu.Lock()
	prevSpec := g.loaded[name]
	g.loaded[name] = dep
	_, was := g.probation[name]
	delete(g.probation, name)
	g.mu.Unlock()
	if was {
		a.persistProbation()
	}
	rules := dep.GetGuard()
	if rules.GetRollbackIf() == "" || !hadPrev || (prev.sha == dep.GetModel().GetSha256() && prev.version == dep.GetModel().GetVersion()) {
		return
	}
	if prevSpec == nil || prevSpec.GetModel().GetSha256() != prev.sha || prevSpec.GetModel().GetVersion() != prev.version {
		prevSpec = a.specFor(name, prev)
	}
	until := time.Now().Add(defaultProbation)
	if s := rules.GetProbationSeconds(); s > 0 {
		until = time.Now().Add(time.Duration(s) * time.Second)
	}
	if a.startProbation(dep, prevSpec, prev.sha, until) {
		a.persistProbation()
	}
}

// startProbation puts dep (loaded now) on probation until the given time,
// to roll back to prev (whose model has digest prevSha). It reports
// whether it did: not when the rule does not parse or the new load is not
// in the scoring stats.
func (a *Agent) startProbation(dep, prev *agentv1.DeploymentSpec, prevSha string, until time.Time) bool {
	name, rules := dep.GetName(), dep.GetGuard()
	log := a.log.With("deployment", name, "version", dep.GetModel().GetVersion())
	rule, err := guardrule.Parse(rules.GetRollbackIf())
	if err != nil {
		log.Error("guard rules ignored", "error", err)
		return false
	}
	if a.cfg.Stats == nil {
		log.Warn("guard rules ignored: this agent has no scoring stats")
		return false
	}
	cur, ok := findLoad(a.cfg.Stats(), name, dep.GetModel().GetVersion())
	if !ok {
		log.Warn("guard rules ignored: the new version is not in the scoring stats")
		return false
	}
	p := &probation{spec: dep, prev: prev, prevSha: prevSha, rule: rule, loadID: cur.ID, base: cur,
		until: until, minRequests: defaultGuardMinRequests}
	if n := rules.GetMinRequests(); n > 0 {
		p.minRequests = uint64(n)
	}
	a.guard.mu.Lock()
	a.guard.probation[name] = p
	a.guard.mu.Unlock()
	log.Info("probation started", "rollback_if", rule.String(), "until", p.until.Format(time.RFC3339),
		"min_requests", p.minRequests, "previous_version", prev.GetModel().GetVersion())
	return true
}

// probationRecord is one probation in DATA/probation.json, so that a
// restart during probation resumes it (on a window starting again at the
// restart).
type probationRecord struct {
	Deployment string    `json:"deployment"`
	Spec       []byte    `json:"spec"` // agentv1.DeploymentSpec, protobuf
	Prev       []byte    `json:"prev"` // agentv1.DeploymentSpec, protobuf
	PrevSha256 string    `json:"prev_sha256"`
	Until      time.Time `json:"until"`
}

func (a *Agent) probationPath() string { return filepath.Join(a.cfg.DataDir, "probation.json") }

// persistProbation writes the probations in progress; a failure is logged
// (the probation goes on, only a restart would not resume it).
func (a *Agent) persistProbation() {
	recs := []probationRecord{}
	a.guard.mu.Lock()
	for _, name := range sortedKeys(a.guard.probation) {
		p := a.guard.probation[name]
		spec, err1 := proto.MarshalOptions{Deterministic: true}.Marshal(p.spec)
		prev, err2 := proto.MarshalOptions{Deterministic: true}.Marshal(p.prev)
		if err1 != nil || err2 != nil {
			continue
		}
		recs = append(recs, probationRecord{Deployment: name, Spec: spec, Prev: prev, PrevSha256: p.prevSha, Until: p.until})
	}
	a.guard.mu.Unlock()
	b, err := json.Marshal(recs)
	if err == nil {
		err = writeState(a.probationPath(), b)
	}
	if err != nil {
		a.log.Error("persist probation record", "error", err)
	}
}

// restoreProbation resumes the probations recorded before a restart whose
// version restore brought back and whose previous model is still cached.
func (a *Agent) restoreProbation() {
	b, err := readState(a.probationPath())
	if err != nil || b == nil {
		if err != nil {
			a.log.Error("read probation record", "error", err)
		}
		return
	}
	var recs []probationRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		a.log.Error("probation record unreadable, ignored", "path", a.probationPath(), "error", err)
		return
	}
	for _, r := range recs {
		var spec, prev agentv1.DeploymentSpec
		if proto.Unmarshal(r.Spec, &spec) != nil || proto.Unmarshal(r.Prev, &prev) != nil || spec.GetName() != r.Deployment {
			a.log.Error("probation record entry ignored", "deployment", r.Deployment)
			continue
		}
		a.mu.Lock()
		s, ok := a.serving[r.Deployment]
		a.mu.Unlock()
		if !ok || s.sha != spec.GetModel().GetSha256() || s.version != spec.GetModel().GetVersion() || !time.Now().Before(r.Until) {
			continue
		}
		if _, err := a.cache.Get(r.PrevSha256); err != nil {
			a.log.Warn("probation not resumed: the previous model is no longer cached", "deployment", r.Deployment, "error", err)
			continue
		}
		a.guard.mu.Lock()
		a.guard.loaded[r.Deployment] = &spec
		a.guard.mu.Unlock()
		if a.startProbation(&spec, &prev, r.PrevSha256, r.Until) {
			a.log.Info("probation resumed after restart", "deployment", r.Deployment, "version", s.version)
		}
	}
	a.persistProbation()
}

// findLoad returns the newest live load of deployment name at version.
func findLoad(all []scoring.VersionStats, name string, version uint32) (scoring.VersionStats, bool) {
	v := strconv.FormatUint(uint64(version), 10)
	var best scoring.VersionStats
	found := false
	for _, s := range all {
		if s.Model == name && s.Version == v && !s.Retired && (!found || s.ID > best.ID) {
			best, found = s, true
		}
	}
	return best, found
}

// guardForget ends any probation of a deployment being removed.
func (a *Agent) guardForget(name string) {
	a.guard.mu.Lock()
	_, was := a.guard.probation[name]
	delete(a.guard.probation, name)
	delete(a.guard.loaded, name)
	a.guard.mu.Unlock()
	if was {
		a.persistProbation()
	}
}

// guardGC returns the digests the guard needs kept in the cache (the
// versions to roll back to) and drops rollback records of deployments d
// no longer has.
func (a *Agent) guardGC(d *agentv1.DesiredState) []string {
	want := map[string]bool{}
	for _, dep := range d.GetDeployments() {
		want[dep.GetName()] = true
	}
	g := a.guard
	g.mu.Lock()
	var pinned []string
	for _, p := range g.probation {
		pinned = append(pinned, p.prevSha)
	}
	changed := false
	for name := range g.rolledBack {
		if !want[name] {
			delete(g.rolledBack, name)
			changed = true
		}
	}
	g.mu.Unlock()
	if changed {
		if err := a.saveRolledBack(); err != nil {
			a.log.Error("persist rollback record", "error", err)
		}
	}
	return pinned
}

// startGuard runs the probation checks every guardInterval until ctx ends;
// the returned func waits for the goroutine to stop.
func (a *Agent) startGuard(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(guardInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				a.guardCheck(ctx, now)
			}
		}
	}()
	return func() { <-done }
}

// guardCheck evaluates every probation once.
func (a *Agent) guardCheck(ctx context.Context, now time.Time) {
	a.guard.mu.Lock()
	if len(a.guard.probation) == 0 {
		a.guard.mu.Unlock()
		return
	}
	ps := make(map[string]*probation, len(a.guard.probation))
	for k, v := range a.guard.probation {
		ps[k] = v
	}
	a.guard.mu.Unlock()
	var stats []scoring.VersionStats
	if a.cfg.Stats != nil {
		stats = a.cfg.Stats()
	}
	for _, name := range sortedKeys(ps) {
		p := ps[name]
		var cur scoring.VersionStats
		found := false
		for _, s := range stats {
			if s.ID == p.loadID {
				cur, found = s, true
			}
		}
		if found {
			w := guardrule.Delta(cur, p.base)
			if w.Requests >= p.minRequests {
				if hold, reason := p.rule.Eval(w); hold {
					a.rollback(ctx, name, p, reason)
					continue
				}
			}
		}
		if !found || now.After(p.until) {
			a.endProbation(name, p)
			if found {
				a.log.Info("probation passed", "deployment", name, "version", p.spec.GetModel().GetVersion(),
					"requests", guardrule.Delta(cur, p.base).Requests)
			}
		}
	}
}

// endProbation drops p if it is still name's probation.
func (a *Agent) endProbation(name string, p *probation) bool {
	a.guard.mu.Lock()
	if a.guard.probation[name] != p {
		a.guard.mu.Unlock()
		return false
	}
	delete(a.guard.probation, name)
	a.guard.mu.Unlock()
	a.persistProbation()
	return true
}

// rollback switches name back from p's version to the one before.
func (a *Agent) rollback(ctx context.Context, name string, p *probation, reason string) {
	g := a.guard
	g.srvMu.Lock()
	defer g.srvMu.Unlock()
	if !a.endProbation(name, p) {
		return // superseded by a newer deploy or a removal
	}
	to := p.spec.GetModel()
	log := a.log.With("deployment", name, "version", to.GetVersion(), "previous_version", p.prev.GetModel().GetVersion())
	log.Warn("guard rule holds; rolling back", "rule", p.rule.String(), "reason", reason)
	path, err := a.cache.Get(p.prevSha)
	if err == nil {
		err = a.srv.Load(ctx, p.prev, path)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		log.Error("rollback failed; the new version keeps serving", "error", err)
		a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
			st.State, st.Error = agentv1.DeploymentStatus_STATE_FAILED,
				fmt.Sprintf("guard rule %q holds (%s) but rollback failed: %v", p.rule.String(), reason, err)
		})
		return
	}
	prev := served{version: p.prev.GetModel().GetVersion(), sha: p.prevSha}
	msg := fmt.Sprintf("rolled back from version %d to %d: %s (rule %q)", to.GetVersion(), prev.version, reason, p.rule.String())
	a.mu.Lock()
	a.serving[name] = prev
	a.mu.Unlock()
	g.mu.Lock()
	g.loaded[name] = p.prev
	g.rolledBack[name] = rolledBack{version: to.GetVersion(), sha: to.GetSha256(), reason: msg,
		prevVersion: prev.version, prevSha: prev.sha}
	g.mu.Unlock()
	if err := a.saveServing(); err != nil {
		log.Error("persist serving record", "error", err)
	}
	if err := a.saveRolledBack(); err != nil {
		log.Error("persist rollback record", "error", err)
	}
	a.event(&agentv1.AgentEvent{Kind: "rollback", Deployment: name, Message: msg, Attrs: map[string]string{
		"from_version": strconv.FormatUint(uint64(to.GetVersion()), 10),
		"from_sha256":  to.GetSha256(),
		"to_version":   strconv.FormatUint(uint64(prev.version), 10),
		"to_sha256":    prev.sha,
		"rule":         p.rule.String(),
		"reason":       reason,
	}})
	a.setStatus(ctx, name, func(st *agentv1.DeploymentStatus) {
		st.State, st.Error, st.Downloaded = agentv1.DeploymentStatus_STATE_ROLLED_BACK, msg, 0
		st.RolledBackVersion, st.RolledBackSha256 = to.GetVersion(), to.GetSha256()
	})
}

// saveRolledBack persists the rollback records (a ReportedState whose
// deployments are STATE_ROLLED_BACK entries).
func (a *Agent) saveRolledBack() error {
	r := &agentv1.ReportedState{}
	a.guard.mu.Lock()
	for _, name := range sortedKeys(a.guard.rolledBack) {
		rb := a.guard.rolledBack[name]
		r.Deployments = append(r.Deployments, &agentv1.DeploymentStatus{Name: name,
			State: agentv1.DeploymentStatus_STATE_ROLLED_BACK, Error: rb.reason,
			ModelVersion: rb.prevVersion, ModelSha256: rb.prevSha,
			RolledBackVersion: rb.version, RolledBackSha256: rb.sha})
	}
	a.guard.mu.Unlock()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rollback record: %w", err)
	}
	return writeState(a.rolledBackPath(), b)
}

// restoreGuard runs after restore: it reads DATA/rolledback.pb and
// reports the deployments it names as rolled back, then resumes the
// probations of DATA/probation.json. An unreadable record is logged and
// ignored (the next change rewrites it).
func (a *Agent) restoreGuard() error {
	if err := a.restoreRolledBack(); err != nil {
		return err
	}
	a.restoreProbation()
	return nil
}

func (a *Agent) restoreRolledBack() error {
	b, err := readState(a.rolledBackPath())
	if err != nil {
		return fmt.Errorf("agent: read rollback record: %w", err)
	}
	if b == nil {
		return nil
	}
	var r agentv1.ReportedState
	if err := proto.Unmarshal(b, &r); err != nil {
		a.log.Error("rollback record unreadable, ignored", "path", a.rolledBackPath(), "error", err)
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.guard.mu.Lock()
	defer a.guard.mu.Unlock()
	for _, d := range r.GetDeployments() {
		if !nameRE.MatchString(d.GetName()) || d.GetRolledBackSha256() == "" {
			a.log.Error("rollback record entry ignored", "deployment", d.GetName())
			continue
		}
		a.guard.rolledBack[d.GetName()] = rolledBack{version: d.GetRolledBackVersion(), sha: d.GetRolledBackSha256(),
			reason: d.GetError(), prevVersion: d.GetModelVersion(), prevSha: d.GetModelSha256()}
		st := a.status[d.GetName()]
		if st == nil {
			st = &agentv1.DeploymentStatus{Name: d.GetName()}
			a.status[d.GetName()] = st
		}
		st.State, st.Error = agentv1.DeploymentStatus_STATE_ROLLED_BACK, d.GetError()
		st.RolledBackVersion, st.RolledBackSha256 = d.GetRolledBackVersion(), d.GetRolledBackSha256()
		a.log.Info("rollback record loaded", "deployment", d.GetName(), "rolled_back_version", d.GetRolledBackVersion())
	}
	return nil
}
