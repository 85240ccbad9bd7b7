package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/testbench"
)

// blobFiles counts the blobs a hub stored under its data directory.
func blobFiles(t *testing.T, data string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(data, "blobs", "sha256"), func(_ string, d fs.DirEntry, err error) error {
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

func TestDatasetsAgainstHub(t *testing.T) {
	ctx := context.Background()
	cfg := testbench.HubConfig(t)
	cfg.MaxArtifactBytes = 1 << 10
	c := client.New(testbench.StartHub(t, cfg).URL)
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}
	content := []byte("x,y\n1,2\n3,4\n")
	h := sha256.Sum256(content)
	sum := hex.EncodeToString(h[:])
	d, err := c.UploadDataset(ctx, "ws", "train", bytes.NewReader(content), int64(len(content)),
		client.DatasetUploadOptions{Format: hub.FormatCSV, SHA256: sum, Filename: "train.csv", Description: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "train" || d.Version != 1 || d.SHA256 != sum || d.Size != int64(len(content)) || d.Rows != 2 ||
		d.Source.Kind != hub.SourceUpload || d.Source.Filename != "train.csv" || d.Description != "first" {
		t.Fatalf("uploaded %+v", d)
	}
	blobs := blobFiles(t, cfg.Data)

	// Refused uploads store nothing: no version, no blob.
	for _, tc := range []struct {
		name    string
		dsName  string
		content string
		opts    client.DatasetUploadOptions
		want    error
		msg     string
	}{
		{"corrupt in transit", "train", "x,y\n1,2\n3,5\n", client.DatasetUploadOptions{Format: hub.FormatCSV, SHA256: sum}, hub.ErrInvalid, "has sha256"},
		{"not JSON Lines", "train", "{\"a\":1}\n{oops}\n", client.DatasetUploadOptions{Format: hub.FormatJSONL}, hub.ErrInvalid, "line 2: not one JSON value"},
		{"ragged CSV", "train", "x,y\n1\n", client.DatasetUploadOptions{Format: hub.FormatCSV}, hub.ErrInvalid, "wrong number of fields"},
		{"oversized", "train", strings.Repeat("{}\n", 400), client.DatasetUploadOptions{Format: hub.FormatJSONL}, hub.ErrTooLarge, "limit of 1024 bytes"},
		{"empty", "train", "", client.DatasetUploadOptions{Format: hub.FormatBinary}, hub.ErrInvalid, "empty file"},
		{"no format", "train", "{}\n", client.DatasetUploadOptions{}, hub.ErrInvalid, "query parameter format missing"},
		{"reserved name", "capture-clf", "{}\n", client.DatasetUploadOptions{Format: hub.FormatJSONL}, hub.ErrInvalid, "reserved for captured inputs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int64{int64(len(tc.content)), -1} { // announced and chunked
				_, err := c.UploadDataset(ctx, "ws", tc.dsName, strings.NewReader(tc.content), size, tc.opts)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("size %d: %v, want %v containing %q", size, err, tc.want, tc.msg)
				}
			}
			if vs, err := c.ListDatasetVersions(ctx, "ws", "train"); err != nil || len(vs) != 1 {
				t.Errorf("versions after a refused upload: %+v, %v; want only version 1", vs, err)
			}
			if n := blobFiles(t, cfg.Data); n != blobs {
				t.Errorf("%d blobs after a refused upload, want %d", n, blobs)
			}
		})
	}

	d2, err := c.UploadDataset(ctx, "ws", "train", strings.NewReader("x,y\n5,6\n"), -1, client.DatasetUploadOptions{Format: hub.FormatCSV})
	if err != nil || d2.Version != 2 || d2.Rows != 1 {
		t.Fatalf("second upload: %+v, %v", d2, err)
	}
	list, err := c.ListDatasets(ctx, "ws")
	if err != nil || len(list) != 1 || list[0].Versions != 2 || list[0].Latest.Version != 2 {
		t.Fatalf("list %+v, %v", list, err)
	}
	if got, err := c.GetDataset(ctx, "ws", "train", 0); err != nil || got.Version != 2 {
		t.Fatalf("latest: %+v, %v", got, err)
	}
	var buf bytes.Buffer
	if got, err := c.DownloadDataset(ctx, "ws", "train", 1, &buf); err != nil || got.Version != 1 || !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("download version 1: %+v, %q, %v", got, buf.String(), err)
	}
	dst := filepath.Join(t.TempDir(), "t.csv")
	if _, err := c.DownloadDatasetFile(ctx, "ws", "train", 1, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("downloaded file %q, %v", b, err)
	}

	// Unknown dataset or version: 404 saying which.
	if _, err := c.GetDataset(ctx, "ws", "nope", 0); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), `dataset "nope" in workspace "ws"`) {
		t.Errorf("unknown dataset: %v", err)
	}
	if _, err := c.GetDataset(ctx, "ws", "train", 7); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), `version 7 of dataset "train" in workspace "ws" (the latest is 2)`) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := c.DownloadDatasetFile(ctx, "ws", "train", 7, filepath.Join(t.TempDir(), "x")); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("download of unknown version: %v", err)
	}
	if _, err := c.ListDatasets(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("datasets of unknown workspace: %v", err)
	}
}
