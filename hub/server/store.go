package server

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/atelier-ml/atelier/hub/internal/sqlite"
)

// DBFile is the name of the SQLite database inside the data directory.
const DBFile = "hub.db"

// Store is the hub's store opened directly on a data directory, for tools
// and benchmarks (bulk imports, measuring the database) that work while no
// hub is serving that directory. It implements hub.Store and adds
// ImportRuns and DB. Close it when done.
type Store struct {
	*sqlite.Store
}

// OpenStore opens (creating and migrating if needed) the store of the data
// directory data.
func OpenStore(ctx context.Context, data string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(data, DBFile)}, log)
	if err != nil {
		return nil, err
	}
	return &Store{st}, nil
}
