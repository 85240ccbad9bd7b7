// Package dataset holds the hub's dataset machinery that is more than
// storage: the Checker that validates an uploaded file while it streams
// into the blob store (format, row count, expected sha256), and the
// Exporter that turns each deployment's captured inputs into versions of
// dataset capture-<deployment> (docs/datasets.md).
//
// It does not store anything itself: versions are recorded through a
// hub.DatasetStore and content goes through hub.Blobs. It does not serve
// HTTP (hub/internal/api does) and does not capture inputs (agents do).
package dataset
