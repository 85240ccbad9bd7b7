package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/atelier-ml/atelier/hub"
)

// DatasetUploadOptions are the parts of a dataset upload besides the
// content.
type DatasetUploadOptions struct {
	// Format is hub.FormatJSONL, hub.FormatCSV or hub.FormatBinary
	// (required).
	Format string
	// SHA256, when set, is the digest the content must have: the hub
	// refuses (hub.ErrInvalid) and stores nothing otherwise.
	SHA256      string
	Filename    string // base name recorded as the source
	Description string
}

// UploadDataset uploads the content r streams as the next version of
// dataset name in ws. size is the exact length of r, or -1 if unknown; r
// is not closed. The hub checks the content against the format while
// storing it: content that does not parse, is empty, is larger than the
// hub's limit (hub.ErrTooLarge) or has another digest than opts.SHA256 is
// refused and nothing is stored.
func (c *Client) UploadDataset(ctx context.Context, ws, name string, r io.Reader, size int64, opts DatasetUploadOptions) (*hub.Dataset, error) {
	q := url.Values{"format": {opts.Format}}
	for k, v := range map[string]string{"sha256": opts.SHA256, "filename": opts.Filename, "description": opts.Description} {
		if v != "" {
			q.Set(k, v)
		}
	}
	p := apiPath("workspaces", ws, "datasets", name, "versions")
	req, err := c.newRequest(ctx, http.MethodPost, p, q, struct{ io.Reader }{r})
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d hub.Dataset
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", p, err)
	}
	return &d, nil
}

// ListDatasets returns the datasets of ws with their latest version and
// version count.
func (c *Client) ListDatasets(ctx context.Context, ws string) ([]hub.DatasetSummary, error) {
	var out []hub.DatasetSummary
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "datasets"), nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListDatasetVersions returns the versions of dataset name, newest first.
func (c *Client) ListDatasetVersions(ctx context.Context, ws, name string) ([]hub.Dataset, error) {
	var out []hub.Dataset
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "datasets", name, "versions"), nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func datasetVersionSegment(version int) string {
	if version == 0 {
		return hub.Latest
	}
	return strconv.Itoa(version)
}

// GetDataset returns version of dataset name (the latest for 0).
// hub.ErrNotFound names the dataset or version missing.
func (c *Client) GetDataset(ctx context.Context, ws, name string, version int) (*hub.Dataset, error) {
	var d hub.Dataset
	if err := c.do(ctx, http.MethodGet, apiPath("workspaces", ws, "datasets", name, "versions", datasetVersionSegment(version)), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DownloadDataset resolves version of dataset name (the latest for 0),
// streams its content into w and checks the content's sha256 and size
// against the version's. On error w may have received part or all of the
// content: write to a temporary file and keep it only on success, as
// DownloadDatasetFile does.
func (c *Client) DownloadDataset(ctx context.Context, ws, name string, version int, w io.Writer) (*hub.Dataset, error) {
	d, err := c.GetDataset(ctx, ws, name, version)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	cw := &countWriter{}
	p := apiPath("workspaces", ws, "datasets", name, "versions", strconv.Itoa(d.Version), "content")
	if err := c.download(ctx, p, io.MultiWriter(w, h, cw)); err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.SHA256 || cw.n != d.Size {
		return nil, fmt.Errorf("download dataset %s: content of %d bytes has sha256 %s, the hub lists %d bytes with sha256 %s",
			d.Ref(), cw.n, got, d.Size, d.SHA256)
	}
	return d, nil
}

// DownloadDatasetFile downloads version of dataset name (the latest for 0)
// to the file dst through a temporary file in the same directory (fsync,
// then rename once the sha256 is verified), so dst is either the whole
// verified content or untouched.
func (c *Client) DownloadDatasetFile(ctx context.Context, ws, name string, version int, dst string) (*hub.Dataset, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".atelier-dataset-*")
	if err != nil {
		return nil, fmt.Errorf("download dataset %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	d, err := c.DownloadDataset(ctx, ws, name, version, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("download dataset %s: %w", name, cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return nil, fmt.Errorf("download dataset %s: %w", d.Ref(), err)
	}
	return d, nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
