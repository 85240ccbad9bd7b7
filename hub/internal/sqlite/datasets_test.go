package sqlite

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestDatasets(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t)
	blob := hub.Blob{SHA256: strings.Repeat("b", 64), Size: 10}
	up := hub.DatasetCreate{Name: "train", Blob: blob, Rows: 3, Format: hub.FormatCSV, Source: hub.DatasetSource{Kind: hub.SourceUpload, Filename: "t.csv"}}
	for i := 1; i <= 2; i++ {
		d, err := st.CreateDataset(ctx, "w", up, nil)
		if err != nil || d.Version != i || d.Workspace != "w" || d.SHA256 != blob.SHA256 || d.Rows != 3 || d.Source.Filename != "t.csv" || d.CreatedAt.IsZero() {
			t.Fatalf("version %d: %+v, %v", i, d, err)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*hub.DatasetCreate)
		cursor *hub.CaptureExport
		want   error
		msg    string
	}{
		{"bad name", func(d *hub.DatasetCreate) { d.Name = "a/b" }, nil, hub.ErrInvalid, "dataset name"},
		{"bad format", func(d *hub.DatasetCreate) { d.Format = "xml" }, nil, hub.ErrInvalid, "dataset format"},
		{"bad blob", func(d *hub.DatasetCreate) { d.Blob.SHA256 = "x" }, nil, hub.ErrInvalid, "sha256"},
		{"upload with cursor", nil, &hub.CaptureExport{Deployment: "d"}, hub.ErrInvalid, "cursor"},
		{"capture without cursor", func(d *hub.DatasetCreate) {
			d.Name, d.Source = "capture-d", hub.DatasetSource{Kind: hub.SourceCapture, Deployment: "d", FirstID: 1, LastID: 2}
		}, nil, hub.ErrInvalid, "capture of deployment"},
		{"capture into another name", func(d *hub.DatasetCreate) {
			d.Source = hub.DatasetSource{Kind: hub.SourceCapture, Deployment: "d", FirstID: 1, LastID: 2}
		}, &hub.CaptureExport{Deployment: "d"}, hub.ErrInvalid, `expected dataset "capture-d"`},
		{"unknown workspace", func(d *hub.DatasetCreate) {}, nil, hub.ErrNotFound, `workspace "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := up
			if tc.mutate != nil {
				tc.mutate(&dc)
			}
			ws := "w"
			if tc.want == hub.ErrNotFound {
				ws = "nope"
			}
			if _, err := st.CreateDataset(ctx, ws, dc, tc.cursor); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	if vs, err := st.DatasetVersions(ctx, "w", "train"); err != nil || len(vs) != 2 || vs[0].Version != 2 {
		t.Fatalf("versions after refused creates: %+v, %v; want 2, newest first", vs, err)
	}

	// Captures move the cursor; a stale cursor is a conflict.
	capture := func(first, last, after int64) error {
		_, err := st.CreateDataset(ctx, "w", hub.DatasetCreate{Name: "capture-d", Blob: blob, Rows: last - first + 1, Format: hub.FormatJSONL,
			Source: hub.DatasetSource{Kind: hub.SourceCapture, Deployment: "d", FirstID: first, LastID: last}}, &hub.CaptureExport{Deployment: "d", Workspace: "w", After: after})
		return err
	}
	if err := capture(1, 5, 0); err != nil {
		t.Fatal(err)
	}
	if err := capture(3, 7, 2); !errors.Is(err, hub.ErrConflict) || !strings.Contains(err.Error(), "is at 5, expected 2") {
		t.Fatalf("stale cursor: %v, want ErrConflict naming both positions", err)
	}
	if err := capture(6, 9, 5); err != nil {
		t.Fatal(err)
	}

	list, err := st.ListDatasets(ctx, "w")
	if err != nil || len(list) != 2 || list[0].Name != "capture-d" || list[0].Versions != 2 || list[0].Latest.Source.FirstID != 6 ||
		list[1].Name != "train" || list[1].Versions != 2 || list[1].Latest.Version != 2 {
		t.Fatalf("list %+v, %v", list, err)
	}
	if d, err := st.GetDataset(ctx, "w", "train", 1); err != nil || d.Version != 1 {
		t.Fatalf("version 1: %+v, %v", d, err)
	}
	if _, err := st.GetDataset(ctx, "w", "train", 9); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), `version 9 of dataset "train" in workspace "w" (the latest is 2)`) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := st.GetDataset(ctx, "w", "nope", 0); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), `dataset "nope" in workspace "w"`) {
		t.Errorf("unknown dataset: %v", err)
	}
	if _, err := st.DatasetVersions(ctx, "w", "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("versions of unknown dataset: %v", err)
	}
	if list, err := st.ListDatasets(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("list of unknown workspace: %+v, %v", list, err)
	}
}
