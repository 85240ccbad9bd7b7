package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// Exporter defaults (a zero field of ExporterConfig takes these).
const (
	DefaultExportInterval = time.Minute
	DefaultMaxRows        = 10_000
	DefaultMaxBytes       = 64 << 20
	DefaultPageRows       = 256
)

// ExporterConfig configures an Exporter.
type ExporterConfig struct {
	// Interval between two exports; default DefaultExportInterval.
	Interval time.Duration
	// MaxRows and MaxBytes cap one version: more new rows are split into
	// several versions. A version always holds at least one row, even one
	// longer than MaxBytes.
	MaxRows  int
	MaxBytes int64
	// PageRows is how many captured inputs are read from the store at a
	// time (each body is at most 1 MiB); default DefaultPageRows.
	PageRows int
}

func (c *ExporterConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultExportInterval
	}
	if c.MaxRows <= 0 {
		c.MaxRows = DefaultMaxRows
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.PageRows <= 0 {
		c.PageRows = DefaultPageRows
	}
}

// Store is what the Exporter needs of the hub's store.
type Store interface {
	PendingCaptures(ctx context.Context) ([]hub.CaptureExport, error)
	CapturedInputs(ctx context.Context, name string, after int64, limit int) ([]hub.CapturedInput, error)
	CreateDataset(ctx context.Context, ws string, dc hub.DatasetCreate, cursor *hub.CaptureExport) (hub.Dataset, error)
}

// Exporter writes the captured inputs of every deployment, oldest first,
// as versions of dataset capture-<deployment> in the deployment's
// workspace: JSON Lines of hub.CaptureRecord, one captured request per
// line, in id order.
//
// Exactly once: a version's blob is stored first, then the version is
// recorded and the deployment's cursor moved past its rows in one
// transaction that also checks the cursor has not moved meanwhile. A crash
// between the two leaves an unreferenced blob (the next export writes the
// same bytes again, so the same blob) and no version; two exporters racing
// make one version, the other gets hub.ErrConflict and skips.
//
// Rows the store dropped before they were exported (it keeps the newest
// 10,000 per deployment) are missing from the datasets; the id range of
// each version (hub.DatasetSource) shows the gap. Safe for concurrent use.
type Exporter struct {
	cfg   ExporterConfig
	st    Store
	blobs hub.Blobs
	log   *slog.Logger
}

// NewExporter returns an Exporter; it does nothing until Run or Export.
func NewExporter(cfg ExporterConfig, st Store, blobs hub.Blobs, log *slog.Logger) *Exporter {
	cfg.defaults()
	return &Exporter{cfg: cfg, st: st, blobs: blobs, log: log}
}

// Run exports every Interval until ctx is done. Errors are logged; the
// next export tries again.
func (e *Exporter) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := e.Export(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("capture export failed; retrying at the next interval", "err", err)
		}
	}
}

// Export exports what is pending now and returns the versions it
// recorded. It goes on with the other deployments when one fails and
// returns the errors joined.
func (e *Exporter) Export(ctx context.Context) ([]hub.Dataset, error) {
	pending, err := e.st.PendingCaptures(ctx)
	if err != nil {
		return nil, err
	}
	var (
		out  []hub.Dataset
		errs []error
	)
	for _, p := range pending {
		for {
			d, more, err := e.exportOne(ctx, p)
			if errors.Is(err, hub.ErrConflict) {
				e.log.Info("capture export skipped: cursor moved concurrently", "deployment", p.Deployment, "err", err)
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("export captured inputs of deployment %q after id %d: %w", p.Deployment, p.After, err))
				break
			}
			if d != nil {
				out = append(out, *d)
				e.log.Info("captured inputs exported", "workspace", p.Workspace, "dataset", d.Ref(),
					"rows", d.Rows, "bytes", d.Size, "first_id", d.Source.FirstID, "last_id", d.Source.LastID)
				p.After = d.Source.LastID
			}
			if !more {
				break
			}
		}
	}
	return out, errors.Join(errs...)
}

// batch is what writeRows wrote: rows with ids first to last; more if
// rows were left for another version.
type batch struct {
	rows, first, last int64
	more              bool
}

// exportOne writes one version of the rows of p after p.After: nil if
// there are none; more says whether rows were left for another version.
func (e *Exporter) exportOne(ctx context.Context, p hub.CaptureExport) (*hub.Dataset, bool, error) {
	page, err := e.st.CapturedInputs(ctx, p.Deployment, p.After, e.cfg.PageRows)
	if err != nil || len(page) == 0 {
		return nil, false, err // nothing (left) to export: no empty blob
	}
	pr, pw := io.Pipe()
	type result struct {
		b   batch
		err error
	}
	res := make(chan result, 1)
	go func() {
		b, err := e.writeRows(ctx, pw, p, page)
		pw.CloseWithError(err)
		res <- result{b, err}
	}()
	blob, putErr := e.blobs.Put(ctx, pr, 1<<62) // writeRows enforces MaxBytes
	pr.CloseWithError(errors.New("capture export: the blob store stopped reading"))
	r := <-res
	switch {
	case r.err != nil:
		return nil, false, r.err
	case putErr != nil:
		return nil, false, putErr
	}
	dc := hub.DatasetCreate{
		Name: hub.CaptureDatasetName(p.Deployment), Blob: blob, Rows: r.b.rows, Format: hub.FormatJSONL,
		Source: hub.DatasetSource{Kind: hub.SourceCapture, Deployment: p.Deployment, FirstID: r.b.first, LastID: r.b.last},
	}
	d, err := e.st.CreateDataset(ctx, p.Workspace, dc, &p)
	if err != nil {
		return nil, false, err
	}
	return &d, r.b.more, nil
}

// writeRows writes the JSON lines of the rows after p.After, starting with
// page (the first page read), to w until a cap is reached or there are no
// more rows.
func (e *Exporter) writeRows(ctx context.Context, w io.Writer, p hub.CaptureExport, page []hub.CapturedInput) (batch, error) {
	var (
		b    batch
		size int64
	)
	for {
		for _, c := range page {
			line, err := json.Marshal(hub.CaptureRecord{ID: c.ID, Time: c.Time, Deployment: c.Deployment, Agent: c.Agent,
				ModelVersion: c.Version, Request: c.Body})
			if err != nil {
				return b, fmt.Errorf("captured input %d: %w", c.ID, err)
			}
			line = append(line, '\n')
			if b.rows > 0 && (b.rows >= int64(e.cfg.MaxRows) || size+int64(len(line)) > e.cfg.MaxBytes) {
				b.more = true
				return b, nil
			}
			if _, err := w.Write(line); err != nil {
				return b, err
			}
			if b.rows == 0 {
				b.first = c.ID
			}
			b.rows++
			b.last = c.ID
			size += int64(len(line))
		}
		if len(page) < e.cfg.PageRows {
			return b, nil
		}
		var err error
		if page, err = e.st.CapturedInputs(ctx, p.Deployment, page[len(page)-1].ID, e.cfg.PageRows); err != nil {
			return b, err
		}
	}
}
