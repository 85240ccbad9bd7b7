package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// newDriftEnv serves the API over a real store holding workspace w, model
// m:1 and deployment d, and returns the store for ingesting telemetry.
func newDriftEnv(t *testing.T) (*env, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "hub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bl, err := blobfs.Open(filepath.Join(dir, "blobs"), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkspace(ctx, "w", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateModelVersion(ctx, "w", hub.ModelVersionCreate{Name: "m", Blob: hub.Blob{SHA256: strings.Repeat("cd", 32), Size: 10},
		IRVersion: 8, Opset: 17, Inputs: []hub.TensorSpec{{Name: "x", Datatype: "FP32"}}}); err != nil {
		t.Fatal(err)
	}
	spec, err := hub.DeploymentCreate{Name: "d", Model: "m:1", Selector: map[string]string{"zone": "a"}}.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDeployment(ctx, "w", spec); err != nil {
		t.Fatal(err)
	}
	a := api.New(api.Config{}, st, bl, log)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(a.Close)
	return &env{t: t, url: srv.URL, api: a}, st
}

func TestDriftAPI(t *testing.T) {
	ctx := context.Background()
	e, st := newDriftEnv(t)
	sk := sketch.New()
	for i := range 100 {
		sk.Add(float64(i))
	}
	start := time.Now().Add(-10 * time.Minute)
	b := &agentv1.TelemetryBatch{Seq: 1, StartUnixNano: start.UnixNano(), EndUnixNano: start.Add(10 * time.Second).UnixNano(),
		Deployments: []*agentv1.DeploymentTelemetry{{Name: "d", ModelVersion: 1, Requests: map[string]uint64{"ok": 3},
			Features: []*agentv1.FeatureSummary{{Input: "x", Index: 0, Count: 100, Mean: 49.5, M2: 83325, Min: 0, Max: 99, Sketch: sk.Proto()}},
			Captured: [][]byte{[]byte(`{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`), []byte(`{"inputs":[]}`), []byte(`{"id":"3"}`)}}}}
	if res, err := st.IngestTelemetry(ctx, []hub.TelemetryUpload{{Agent: "edge-1", Batches: []*agentv1.TelemetryBatch{b}}}); err != nil || res.Stored != 1 {
		t.Fatalf("ingest %+v, %v", res, err)
	}

	var rep hub.DriftReport
	e.ok(200, "GET", ws+"/w/deployments/d/drift?since=2h", nil, &rep)
	if rep.Status != hub.DriftPendingBaseline || rep.Model != "m" || rep.Version != 1 || len(rep.Features) != 1 ||
		rep.Features[0].Count != 100 || rep.Threshold != 0.2 || rep.Until.Sub(rep.Since).Round(time.Minute) != 2*time.Hour {
		t.Fatalf("report %+v: want pending_baseline over 2h with x[0] of 100 values", rep)
	}
	e.fails(400, "invalid", "GET", ws+"/w/deployments/d/drift?since=yesterday", nil, `since="yesterday"`, "duration")
	e.fails(404, "not_found", "GET", ws+"/w/deployments/nope/drift", nil, "nope")

	// The drifting flag shows in show and list.
	if _, err := st.SetDrifting(ctx, "d", true); err != nil {
		t.Fatal(err)
	}
	var d hub.Deployment
	e.ok(200, "GET", ws+"/w/deployments/d", nil, &d)
	var list []hub.Deployment
	e.ok(200, "GET", ws+"/w/deployments", nil, &list)
	if !d.Drifting || len(list) != 1 || !list[0].Drifting {
		t.Errorf("drifting not shown: show %v, list %+v", d.Drifting, list)
	}

	var caps []hub.CapturedInput
	e.ok(200, "GET", ws+"/w/deployments/d/captured?limit=2", nil, &caps)
	if len(caps) != 2 || caps[0].Agent != "edge-1" || !strings.Contains(string(caps[0].Body), `"data":[1]`) {
		t.Fatalf("captured page 1: %+v", caps)
	}
	var rest []hub.CapturedInput
	e.ok(200, "GET", ws+"/w/deployments/d/captured?after="+itoa(caps[1].ID), nil, &rest)
	if len(rest) != 1 || string(rest[0].Body) != `{"id":"3"}` {
		t.Fatalf("captured page 2: %+v", rest)
	}
	e.fails(400, "invalid", "GET", ws+"/w/deployments/d/captured?limit=0", nil, "limit=")
	e.fails(400, "invalid", "GET", ws+"/w/deployments/d/captured?after=-1", nil, "after=")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
