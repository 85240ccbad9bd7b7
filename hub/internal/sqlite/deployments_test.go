package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

// enrollAgent enrolls an agent with labels and returns its id.
func enrollAgent(t *testing.T, st *Store, name string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	tok, err := st.CreateJoinToken(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := st.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: name, Labels: labels, Capabilities: edgeCaps})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func spec(t *testing.T, dc hub.DeploymentCreate) hub.DeploymentSpec {
	t.Helper()
	s, err := dc.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeploymentCreateErrors(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	register(t, st, "clf", 1)
	if _, err := st.SetModelAlias(ctx, "w", "clf", "prod", 1); err != nil {
		t.Fatal(err)
	}
	edge := enrollAgent(t, st, "edge-1", map[string]string{"zone": "a"})
	gone := enrollAgent(t, st, "edge-2", nil)
	if _, err := st.RevokeAgent(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkspace(ctx, "w2", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "taken", Model: "clf:1", Agents: []string{edge}})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ws   string
		dc   hub.DeploymentCreate
		want error
		msg  string
	}{
		{"unknown workspace", "nope", hub.DeploymentCreate{Name: "d", Model: "clf:1", Agents: []string{edge}}, hub.ErrNotFound, `workspace "nope"`},
		{"unknown model", "w", hub.DeploymentCreate{Name: "d", Model: "other:1", Agents: []string{edge}}, hub.ErrNotFound, `model "other"`},
		{"unknown version", "w", hub.DeploymentCreate{Name: "d", Model: "clf:7", Agents: []string{edge}}, hub.ErrNotFound, "version 7"},
		{"unknown alias", "w", hub.DeploymentCreate{Name: "d", Model: "clf@staging", Agents: []string{edge}}, hub.ErrNotFound, `alias "staging"`},
		{"unknown agent", "w", hub.DeploymentCreate{Name: "d", Model: "clf:1", Agents: []string{"nobody"}}, hub.ErrNotFound, `agent "nobody"`},
		{"revoked agent", "w", hub.DeploymentCreate{Name: "d", Model: "clf:1", Agents: []string{gone}}, hub.ErrInvalid, "revoked"},
		{"name taken in this workspace", "w", hub.DeploymentCreate{Name: "taken", Model: "clf:1", Agents: []string{edge}}, hub.ErrConflict, "already exists"},
		{"name taken in another workspace", "w2", hub.DeploymentCreate{Name: "taken", Model: "clf:1", Agents: []string{edge}}, hub.ErrNotFound, `model "clf"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.CreateDeployment(ctx, tc.ws, spec(t, tc.dc))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// Hub-wide uniqueness: the same name in another workspace, with a
	// valid model there, is a conflict naming the other workspace.
	if _, err := st.CreateModelVersion(ctx, "w2", hub.ModelVersionCreate{Name: "clf", Blob: blobOf(5), IRVersion: 8, Opset: 17}); err != nil {
		t.Fatal(err)
	}
	_, err := st.CreateDeployment(ctx, "w2", spec(t, hub.DeploymentCreate{Name: "taken", Model: "clf", Selector: map[string]string{"zone": "a"}}))
	if !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), `workspace "w"`) {
		t.Fatalf("cross-workspace name: got %v", err)
	}
	list, err := st.ListDeployments(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("a refused create stores nothing: %v %+v", err, list)
	}
}

func TestDeploymentLifecycle(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	register(t, st, "clf", 1)
	v2 := register(t, st, "clf", 2)
	if _, err := st.SetModelAlias(ctx, "w", "clf", "prod", 1); err != nil {
		t.Fatal(err)
	}
	edge := enrollAgent(t, st, "edge-1", map[string]string{"zone": "a"})

	d, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "fraud", Model: "clf@prod",
		Selector: map[string]string{"zone": "a"}, Options: hub.RuntimeOptions{MaxBatch: 4, MaxDelay: "2ms"}}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || d.Alias != "prod" || d.Model != "clf" || d.SHA256 != blobOf(1).SHA256 || d.Options.MaxBatch != 4 ||
		d.Selector["zone"] != "a" || len(d.Agents) != 0 || d.Workspace != "w" {
		t.Fatalf("created: %+v", d)
	}
	// Moving the alias does not move the deployment.
	if _, err := st.SetModelAlias(ctx, "w", "clf", "prod", 2); err != nil {
		t.Fatal(err)
	}
	if d, _ = st.GetDeployment(ctx, "w", "fraud"); d.Version != 1 {
		t.Fatalf("alias moved the deployment to %d", d.Version)
	}
	// A deployed version cannot be deleted, even with force.
	err = st.DeleteModelVersion(ctx, "w", "clf", 1, true)
	if !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), "fraud") {
		t.Fatalf("delete deployed version: %v", err)
	}
	// An update of the options keeps version and alias.
	u, err := hub.DeploymentUpdate{Options: &hub.RuntimeOptions{MaxBatch: 8}}.Apply(d)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = st.UpdateDeployment(ctx, "w", u); err != nil || d.Version != 1 || d.Alias != "prod" || d.Options.MaxBatch != 8 {
		t.Fatalf("options update: %v %+v", err, d)
	}
	// An update with the alias resolves it again; targets by id.
	u, err = hub.DeploymentUpdate{Model: "clf@prod", Agents: []string{edge}}.Apply(d)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = st.UpdateDeployment(ctx, "w", u); err != nil || d.Version != 2 || d.SHA256 != v2.SHA256 || len(d.Selector) != 0 || d.Agents[0] != edge {
		t.Fatalf("model update: %v %+v", err, d)
	}
	// A refused update changes nothing.
	u, _ = hub.DeploymentUpdate{Model: "clf:9"}.Apply(d)
	if _, err := st.UpdateDeployment(ctx, "w", u); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("update to a missing version: %v", err)
	}
	if got, _ := st.GetDeployment(ctx, "w", "fraud"); got.Version != 2 {
		t.Fatalf("refused update changed the version to %d", got.Version)
	}
	// Version 1 is free now; version 2 is not.
	if err := st.DeleteModelVersion(ctx, "w", "clf", 1, false); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListDeployments(ctx, "w")
	if err != nil || len(list) != 1 || list[0].Name != "fraud" {
		t.Fatalf("list: %v %+v", err, list)
	}
	// A target revoked since does not block an update of the model; adding
	// a revoked agent does.
	other := enrollAgent(t, st, "edge-2", nil)
	if _, err := st.RevokeAgent(ctx, edge); err != nil {
		t.Fatal(err)
	}
	u, _ = hub.DeploymentUpdate{Model: "clf:2"}.Apply(d)
	if _, err := st.UpdateDeployment(ctx, "w", u); err != nil {
		t.Fatalf("update with a revoked kept target: %v", err)
	}
	if _, err := st.RevokeAgent(ctx, other); err != nil {
		t.Fatal(err)
	}
	u, _ = hub.DeploymentUpdate{Agents: []string{edge, other}}.Apply(d)
	if _, err := st.UpdateDeployment(ctx, "w", u); !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), other) {
		t.Fatalf("adding a revoked target: %v", err)
	}
	if err := st.DeleteDeployment(ctx, "w", "fraud"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteDeployment(ctx, "w", "fraud"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := st.DeleteModelVersion(ctx, "w", "clf", 2, true); err != nil {
		t.Fatalf("undeployed version: %v", err)
	}
}

func TestAdvanceDesired(t *testing.T) {
	ctx := context.Background()
	st, path := openTest(t)
	advance := func(digests map[string]string) map[string]hub.DesiredRecord {
		t.Helper()
		recs, err := st.AdvanceDesired(ctx, digests)
		if err != nil {
			t.Fatalf("advance %v: %v", digests, err)
		}
		return recs
	}
	if got := advance(map[string]string{"a1": "x", "a2": "y"}); fmt.Sprint(got) != "map[a1:{1 x} a2:{1 y}]" {
		t.Fatalf("first records: %v", got)
	}
	// The same content keeps its generation; new content gets stored + 1,
	// whatever the caller read before.
	if got := advance(map[string]string{"a1": "x", "a2": "z"}); fmt.Sprint(got) != "map[a1:{1 x} a2:{2 z}]" {
		t.Fatalf("second records: %v", got)
	}
	if got := advance(map[string]string{"a2": "x"}); fmt.Sprint(got) != "map[a2:{3 x}]" {
		t.Fatalf("third records: %v", got)
	}

	// Bad input is refused whole: nothing of it is stored.
	for _, bad := range []map[string]string{{"a1": "new", "": "d"}, {"a1": "new", "a3": ""}} {
		if _, err := st.AdvanceDesired(ctx, bad); !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), "expected an agent id and a non-empty digest") {
			t.Errorf("advance %q: %v, want ErrInvalid", bad, err)
		}
	}

	// Concurrent callers, half of them through a second store over the same
	// file (as two hub processes), never conflict: every change gets its
	// own generation.
	other, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const writers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				s := st
				if w%2 == 1 {
					s = other
				}
				if _, err := s.AdvanceDesired(ctx, map[string]string{"busy": fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent advance: %v", err)
	}

	st.Close()
	other.Close()
	st2, err := Open(ctx, Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	recs, err := st2.DesiredRecords(ctx)
	if err != nil || len(recs) != 3 || recs["a1"] != (hub.DesiredRecord{Generation: 1, Digest: "x"}) ||
		recs["a2"] != (hub.DesiredRecord{Generation: 3, Digest: "x"}) || recs["busy"].Generation != writers*rounds {
		t.Fatalf("after reopen: %v %+v; want a1 {1 x}, a2 {3 x}, busy at generation %d", err, recs, writers*rounds)
	}
	// A reopened store continues from the stored generation.
	if got, err := st2.AdvanceDesired(ctx, map[string]string{"a1": "w"}); err != nil || got["a1"] != (hub.DesiredRecord{Generation: 2, Digest: "w"}) {
		t.Fatalf("after reopen: %v %v", got, err)
	}
}

func TestDeleteWorkspaceForceDropsDeployments(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	register(t, st, "clf", 1)
	edge := enrollAgent(t, st, "edge-1", nil)
	if _, err := st.CreateDeployment(ctx, "w", spec(t, hub.DeploymentCreate{Name: "d", Model: "clf", Agents: []string{edge}})); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteWorkspace(ctx, "w", false); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("non-forced delete: %v", err)
	}
	if err := st.DeleteWorkspace(ctx, "w", true); err != nil {
		t.Fatal(err)
	}
	if list, err := st.ListDeployments(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("after forced delete: %v %+v", err, list)
	}
}
