package dataset_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/blobfs"
	"github.com/atelier-ml/atelier/hub/internal/dataset"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// env is a real store and blob store in a temporary directory, with
// workspace "ws", model "m" and deployment "clf" in it.
type env struct {
	st    *sqlite.Store
	blobs *blobfs.Store
	dir   string
	seq   uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "hub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := blobfs.Open(filepath.Join(dir, "blobs"), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateModelVersion(ctx, "ws", hub.ModelVersionCreate{Name: "m", Blob: hub.Blob{SHA256: strings.Repeat("a", 64), Size: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDeployment(ctx, "ws", hub.DeploymentSpec{Name: "clf", Model: "m", Selector: map[string]string{"zone": "eu"}}); err != nil {
		t.Fatal(err)
	}
	return &env{st: st, blobs: blobs, dir: dir}
}

// capture stores one telemetry batch of agent "a" carrying the bodies as
// captured inputs of deployment name.
func (e *env) capture(t *testing.T, name string, bodies ...string) {
	t.Helper()
	e.seq++
	d := &agentv1.DeploymentTelemetry{Name: name, ModelVersion: 1}
	for _, b := range bodies {
		d.Captured = append(d.Captured, []byte(b))
	}
	start := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC).Add(time.Duration(e.seq) * time.Minute)
	res, err := e.st.IngestTelemetry(context.Background(), []hub.TelemetryUpload{{Agent: "a", Batches: []*agentv1.TelemetryBatch{{
		Seq: e.seq, StartUnixNano: start.UnixNano(), EndUnixNano: start.Add(10 * time.Second).UnixNano(), Deployments: []*agentv1.DeploymentTelemetry{d},
	}}}})
	if err != nil || res.Stored != 1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
}

// records reads the content of a dataset version as capture records.
func (e *env) records(t *testing.T, d hub.Dataset) []hub.CaptureRecord {
	t.Helper()
	f, b, err := e.blobs.Open(context.Background(), d.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b.Size != d.Size {
		t.Errorf("blob of %d bytes, dataset says %d", b.Size, d.Size)
	}
	var out []hub.CaptureRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r hub.CaptureRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func body(i int) string {
	return fmt.Sprintf(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[%d,0.5]}]}`, i)
}

func TestExportExactlyOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	ex := dataset.NewExporter(dataset.ExporterConfig{}, e.st, e.blobs, slog.New(slog.DiscardHandler))

	if got, err := ex.Export(ctx); err != nil || len(got) != 0 {
		t.Fatalf("export with nothing captured: %v, %v; want no version", got, err)
	}
	e.capture(t, "clf", body(1), body(2))
	e.capture(t, "clf", body(3))
	e.capture(t, "other", body(99)) // no such deployment: not exported

	got, err := ex.Export(ctx)
	if err != nil || len(got) != 1 {
		t.Fatalf("first export: %+v, %v; want one version", got, err)
	}
	v1 := got[0]
	if v1.Workspace != "ws" || v1.Name != "capture-clf" || v1.Version != 1 || v1.Rows != 3 || v1.Format != hub.FormatJSONL ||
		v1.Source.Kind != hub.SourceCapture || v1.Source.Deployment != "clf" || v1.Source.LastID < v1.Source.FirstID {
		t.Fatalf("version %+v", v1)
	}
	recs := e.records(t, v1)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for i, r := range recs {
		if string(r.Request) != body(i+1) || r.Deployment != "clf" || r.Agent != "a" || r.ModelVersion != 1 || r.Time.IsZero() {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if recs[0].ID != v1.Source.FirstID || recs[2].ID != v1.Source.LastID {
		t.Errorf("ids %d..%d, source says %d..%d", recs[0].ID, recs[2].ID, v1.Source.FirstID, v1.Source.LastID)
	}

	// Run again: nothing new, nothing exported.
	if got, err := ex.Export(ctx); err != nil || len(got) != 0 {
		t.Fatalf("second export: %+v, %v; want nothing", got, err)
	}
	// New rows: exactly those in version 2.
	e.capture(t, "clf", body(4))
	got, err = ex.Export(ctx)
	if err != nil || len(got) != 1 || got[0].Version != 2 || got[0].Rows != 1 || got[0].Source.FirstID <= v1.Source.LastID {
		t.Fatalf("third export: %+v, %v; want version 2 with the one new row", got, err)
	}
	if recs := e.records(t, got[0]); len(recs) != 1 || string(recs[0].Request) != body(4) {
		t.Errorf("version 2 records %+v", recs)
	}

	// A second exporter that read the cursor before the first moved it
	// (as after a crash or a race) is refused and records nothing.
	_, err = e.st.CreateDataset(ctx, "ws", hub.DatasetCreate{Name: "capture-clf", Blob: hub.Blob{SHA256: v1.SHA256, Size: v1.Size}, Rows: 3,
		Format: hub.FormatJSONL, Source: v1.Source}, &hub.CaptureExport{Deployment: "clf", Workspace: "ws", After: 0})
	if !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("stale cursor: %v, want ErrConflict", err)
	}
	vs, err := e.st.DatasetVersions(ctx, "ws", "capture-clf")
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions %+v, %v; want 2", vs, err)
	}
}

// failOnce is the real store whose first CreateDataset fails before it
// commits, as a crash between storing the blob and recording the version
// would.
type failOnce struct {
	*sqlite.Store
	failed bool
}

func (f *failOnce) CreateDataset(ctx context.Context, ws string, dc hub.DatasetCreate, c *hub.CaptureExport) (hub.Dataset, error) {
	if !f.failed {
		f.failed = true
		return hub.Dataset{}, errors.New("simulated crash before commit")
	}
	return f.Store.CreateDataset(ctx, ws, dc, c)
}

func TestExportCrashBeforeCommit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := &failOnce{Store: e.st}
	ex := dataset.NewExporter(dataset.ExporterConfig{}, st, e.blobs, slog.New(slog.DiscardHandler))
	e.capture(t, "clf", body(1), body(2))
	if got, err := ex.Export(ctx); err == nil || len(got) != 0 {
		t.Fatalf("export through the failing store: %+v, %v; want an error and no version", got, err)
	}
	if _, err := e.st.GetDataset(ctx, "ws", "capture-clf", 0); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("dataset after the failed export: %v, want ErrNotFound", err)
	}
	e.capture(t, "clf", body(3))
	got, err := ex.Export(ctx)
	if err != nil || len(got) != 1 || got[0].Version != 1 || got[0].Rows != 3 {
		t.Fatalf("export after the crash: %+v, %v; want version 1 with all 3 rows", got, err)
	}
	recs := e.records(t, got[0])
	for i, r := range recs {
		if string(r.Request) != body(i+1) {
			t.Errorf("record %d: %s, want %s", i, r.Request, body(i+1))
		}
	}
	if got, err := ex.Export(ctx); err != nil || len(got) != 0 {
		t.Fatalf("export again: %+v, %v; want nothing", got, err)
	}
}

func TestExportSplitsVersions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		cfg      dataset.ExporterConfig
		rows     int
		wantRows []int64
	}{
		{"max rows", dataset.ExporterConfig{MaxRows: 3, PageRows: 2}, 7, []int64{3, 3, 1}},
		{"max bytes (lines of 171 bytes)", dataset.ExporterConfig{MaxBytes: 400, PageRows: 5}, 5, []int64{2, 2, 1}},
		{"a row above max bytes still goes", dataset.ExporterConfig{MaxBytes: 10}, 2, []int64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for i := range tc.rows {
				e.capture(t, "clf", body(i))
			}
			got, err := dataset.NewExporter(tc.cfg, e.st, e.blobs, slog.New(slog.DiscardHandler)).Export(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.wantRows) {
				t.Fatalf("%d versions, want %d: %+v", len(got), len(tc.wantRows), got)
			}
			var last int64
			n := 0
			for i, d := range got {
				if d.Version != i+1 || d.Rows != tc.wantRows[i] || d.Source.FirstID <= last {
					t.Errorf("version %d: %+v (previous last id %d)", i+1, d, last)
				}
				last = d.Source.LastID
				for _, r := range e.records(t, d) {
					if string(r.Request) != body(n) {
						t.Errorf("row %d: %s, want %s", n, r.Request, body(n))
					}
					n++
				}
			}
			if n != tc.rows {
				t.Errorf("%d rows exported, want %d", n, tc.rows)
			}
		})
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// countBlobs counts the stored blobs (files under sha256/).
func countBlobs(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "sha256"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChecker(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, format, content string
		sha                   string // "" none, "ok" the content's, else as is
		rows                  int64
		err                   string // "" for success
	}{
		{"jsonl", hub.FormatJSONL, "{\"a\":1}\n\n[2]\n3", "ok", 3, ""},
		{"jsonl crlf", hub.FormatJSONL, "{\"a\":1}\r\n{\"a\":2}\r\n", "", 2, ""},
		{"jsonl bad line", hub.FormatJSONL, "{\"a\":1}\n{\"a\":\n", "", 0, "line 2: not one JSON value"},
		{"jsonl two values on a line", hub.FormatJSONL, "1 2\n", "", 0, "line 1: not one JSON value"},
		{"csv", hub.FormatCSV, "x,y\n1,2\n3,\"4,5\"\n", "ok", 2, ""},
		{"csv header only", hub.FormatCSV, "x,y\n", "", 0, ""},
		{"csv ragged", hub.FormatCSV, "x,y\n1,2\n3\n", "", 0, "record on line 3: wrong number of fields"},
		{"csv bad quote", hub.FormatCSV, "x,y\n1,\"2\n", "", 0, "CSV:"},
		{"binary", hub.FormatBinary, "\x00\x01\x02", "", 0, ""},
		{"empty", hub.FormatBinary, "", "", 0, "empty file"},
		{"sha mismatch", hub.FormatJSONL, "{}\n", strings.Repeat("0", 64), 0, "has sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			blobs, err := blobfs.Open(dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.sha
			if want == "ok" {
				want = sum([]byte(tc.content))
			}
			ck, err := dataset.NewChecker(tc.format, strings.NewReader(tc.content), want)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			b, err := blobs.Put(ctx, ck, 1<<20)
			if tc.err != "" {
				if !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Put: %v, want ErrInvalid containing %q", err, tc.err)
				}
				if n := countBlobs(t, dir); n != 0 {
					t.Errorf("%d blobs stored after a refused content", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.SHA256 != sum([]byte(tc.content)) || ck.Rows() != tc.rows {
				t.Errorf("blob %+v, rows %d; want rows %d", b, ck.Rows(), tc.rows)
			}
		})
	}
}

func TestCheckerTooLargeAndAbandoned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := blobfs.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat("{\"a\":1}\n", 1000)
	ck, err := dataset.NewChecker(hub.FormatJSONL, strings.NewReader(content), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Put(ctx, ck, 100); !errors.Is(err, hub.ErrTooLarge) {
		t.Fatalf("Put over the limit: %v, want ErrTooLarge", err)
	}
	ck.Close() // ends the check goroutine blocked on the rest
	if n := countBlobs(t, dir); n != 0 {
		t.Errorf("%d blobs stored", n)
	}
	if _, err := io.ReadAll(ck); err == nil {
		t.Error("read after Close: want the abandon error")
	}
	if _, err := dataset.NewChecker("parquet", bytes.NewReader(nil), ""); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("unknown format: %v, want ErrInvalid", err)
	}
}

func FuzzChecker(f *testing.F) {
	f.Add("jsonl", []byte("{\"a\":1}\n[]\n"))
	f.Add("csv", []byte("a,b\n1,2\n"))
	f.Add("csv", []byte("a,\"b\n"))
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		ck, err := dataset.NewChecker(format, bytes.NewReader(data), "")
		if err != nil {
			return
		}
		defer ck.Close()
		got, err := io.ReadAll(ck)
		if err != nil {
			if !errors.Is(err, hub.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !bytes.Equal(got, data) || ck.Rows() < 0 {
			t.Fatalf("passed %d of %d bytes through, rows %d", len(got), len(data), ck.Rows())
		}
	})
}
