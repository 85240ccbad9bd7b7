package server

import (
	"context"
	"log/slog"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/dataset"
)

// runCaptureExport writes the captured inputs of every deployment to
// versions of dataset capture-<deployment> until ctx is done, with the
// exporter's defaults: every minute (dataset.DefaultExportInterval), at
// most 10,000 rows or 64 MiB per version (docs/datasets.md).
func runCaptureExport(ctx context.Context, st dataset.Store, blobs hub.Blobs, log *slog.Logger) {
	dataset.NewExporter(dataset.ExporterConfig{}, st, blobs, log).Run(ctx)
}
