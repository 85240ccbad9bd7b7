package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func blobOf(n int) hub.Blob {
	return hub.Blob{SHA256: fmt.Sprintf("%064x", n), Size: int64(100 + n)}
}

func register(t *testing.T, st *Store, name string, n int) hub.ModelVersion {
	t.Helper()
	mv, err := st.CreateModelVersion(context.Background(), "w", hub.ModelVersionCreate{
		Name: name, Blob: blobOf(n), IRVersion: 8, Opset: 17, Producer: "test",
		Inputs:  []hub.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []hub.Dim{{Value: -1, Param: "batch"}, {Value: 4}}}},
		Outputs: []hub.TensorSpec{{Name: "y", Datatype: "FP32", Shape: []hub.Dim{{Value: -1}, {Value: 2}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mv
}

func TestModelVersionsIncrement(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	for want := 1; want <= 3; want++ {
		mv := register(t, st, "clf", want)
		if mv.Version != want || mv.SHA256 != blobOf(want).SHA256 || mv.Workspace != "w" {
			t.Fatalf("registration %d: got %+v", want, mv)
		}
	}
	if mv := register(t, st, "other", 9); mv.Version != 1 {
		t.Errorf("a new name starts at 1, got %d", mv.Version)
	}
	// Signature round trip, with named and unnamed dynamic dims.
	got, err := st.GetModelVersion(ctx, "w", "clf", hub.VersionRef{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.Inputs[0].Shape[0].Param != "batch" || got.Outputs[0].Shape[0].Value != -1 || got.Inputs[0].Shape[1].Value != 4 {
		t.Errorf("signature: %+v %+v", got.Inputs, got.Outputs)
	}
	// Deleting the latest version does not reuse its number.
	if err := st.DeleteModelVersion(ctx, "w", "clf", 3, false); err != nil {
		t.Fatal(err)
	}
	if mv := register(t, st, "clf", 4); mv.Version != 4 {
		t.Errorf("after deleting 3, next version = %d, want 4", mv.Version)
	}
	list, err := st.ListModels(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "clf" || list[0].Versions != 3 || list[0].Latest.Version != 4 || list[1].Name != "other" {
		t.Errorf("ListModels: %+v", list)
	}
	vs, err := st.ListModelVersions(ctx, "w", "clf")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[0].Version != 4 || vs[2].Version != 1 {
		t.Errorf("ListModelVersions: %+v", vs)
	}
}

func TestModelVersionsConcurrent(t *testing.T) {
	st, _ := openTest(t)
	const n = 16
	var wg sync.WaitGroup
	got := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mv, err := st.CreateModelVersion(context.Background(), "w", hub.ModelVersionCreate{Name: "m", Blob: blobOf(i)})
			got[i], errs[i] = mv.Version, err
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[got[i]] || got[i] < 1 || got[i] > n {
			t.Fatalf("versions %v: duplicate or out of range", got)
		}
		seen[got[i]] = true
	}
}

func TestModelLineage(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	r, err := st.CreateRun(ctx, "w", hub.RunCreate{Experiment: "train"})
	if err != nil {
		t.Fatal(err)
	}
	mv, err := st.CreateModelVersion(ctx, "w", hub.ModelVersionCreate{Name: "m", Blob: blobOf(1), RunID: r.ID, ArtifactPath: "model.onnx"})
	if err != nil {
		t.Fatal(err)
	}
	if mv.RunID != r.ID || mv.Experiment != "train" || mv.ArtifactPath != "model.onnx" {
		t.Errorf("lineage: %+v", mv)
	}
	_, err = st.CreateModelVersion(ctx, "w", hub.ModelVersionCreate{Name: "m", Blob: blobOf(2), RunID: "nope"})
	if !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), `run "nope"`) {
		t.Errorf("unknown run: %v", err)
	}
	// The failed registration consumed no version number.
	if mv := register(t, st, "m", 3); mv.Version != 2 {
		t.Errorf("version after a refused registration = %d, want 2", mv.Version)
	}
}

func TestModelRefsAndErrors(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	register(t, st, "m", 1)
	register(t, st, "m", 2)
	if _, err := st.SetModelAlias(ctx, "w", "m", "production", 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		model   string
		ref     hub.VersionRef
		version int
		err     error
		msg     string
	}{
		{"latest", "m", hub.VersionRef{}, 2, nil, ""},
		{"number", "m", hub.VersionRef{Version: 1}, 1, nil, ""},
		{"alias", "m", hub.VersionRef{Alias: "production"}, 1, nil, ""},
		{"unknown model", "x", hub.VersionRef{}, 0, hub.ErrNotFound, `model "x"`},
		{"unknown version", "m", hub.VersionRef{Version: 7}, 0, hub.ErrNotFound, "version 7 of model"},
		{"unknown alias", "m", hub.VersionRef{Alias: "staging"}, 0, hub.ErrNotFound, `alias "staging" of model "m"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mv, err := st.GetModelVersion(ctx, "w", tc.model, tc.ref)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("got %v, want %v containing %q", err, tc.err, tc.msg)
				}
				return
			}
			if err != nil || mv.Version != tc.version {
				t.Fatalf("got version %d, %v; want %d", mv.Version, err, tc.version)
			}
		})
	}
	// Moving an alias.
	mv, err := st.SetModelAlias(ctx, "w", "m", "production", 2)
	if err != nil || len(mv.Aliases) != 1 || mv.Aliases[0] != "production" {
		t.Fatalf("move alias: %+v, %v", mv, err)
	}
	if v1, _ := st.GetModelVersion(ctx, "w", "m", hub.VersionRef{Version: 1}); len(v1.Aliases) != 0 {
		t.Errorf("version 1 still has aliases %v", v1.Aliases)
	}
	for _, bad := range []string{"latest", "1abc", "", "a b"} {
		if _, err := st.SetModelAlias(ctx, "w", "m", bad, 2); !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("alias %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := st.SetModelAlias(ctx, "w", "m", "x", 9); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("alias to a missing version: %v", err)
	}
	// Tags.
	mv, err = st.SetModelVersionTags(ctx, "w", "m", hub.VersionRef{Alias: "production"}, map[string]string{"stage": "prod"})
	if err != nil || mv.Tags["stage"] != "prod" || mv.Version != 2 {
		t.Fatalf("tags: %+v, %v", mv, err)
	}
	if _, err := st.SetModelVersionTags(ctx, "w", "m", hub.VersionRef{}, map[string]string{"bad key": "x"}); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad tag key: %v", err)
	}
	// Delete rules: an alias target needs force, which drops the alias.
	err = st.DeleteModelVersion(ctx, "w", "m", 2, false)
	if !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), "production") {
		t.Fatalf("delete alias target: %v", err)
	}
	if _, err := st.GetModelVersion(ctx, "w", "m", hub.VersionRef{Version: 2}); err != nil {
		t.Fatalf("refused delete removed the version: %v", err)
	}
	if err := st.DeleteModelVersion(ctx, "w", "m", 2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetModelVersion(ctx, "w", "m", hub.VersionRef{Alias: "production"}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("alias survived a forced delete: %v", err)
	}
	if err := st.DeleteModelAlias(ctx, "w", "m", "production"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("delete missing alias: %v", err)
	}
	if err := st.DeleteModelVersion(ctx, "w", "m", 2, false); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("delete deleted version: %v", err)
	}
	// Invalid registrations store nothing.
	for _, mc := range []hub.ModelVersionCreate{
		{Name: "bad name", Blob: blobOf(1)},
		{Name: "m", Blob: hub.Blob{SHA256: "abc"}},
		{Name: "m", Blob: blobOf(1), ArtifactPath: "x.onnx"},
	} {
		if _, err := st.CreateModelVersion(ctx, "w", mc); !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", mc, err)
		}
	}
	if _, err := st.ListModels(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("models of a missing workspace: %v", err)
	}
	// A workspace holding only models is not empty; a forced delete
	// removes its models.
	register(t, st, "m", 5)
	if err := st.DeleteWorkspace(ctx, "w", false); !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), "2 model versions") {
		t.Fatalf("delete a workspace holding a model: %v", err)
	}
	if err := st.DeleteWorkspace(ctx, "w", true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkspace(ctx, "w", ""); err != nil {
		t.Fatal(err)
	}
	if list, err := st.ListModels(ctx, "w"); err != nil || len(list) != 0 {
		t.Errorf("models after recreating the workspace: %+v, %v", list, err)
	}
}
