package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// Config configures a Store.
type Config struct {
	// Path of the database file; its directory is created if missing.
	Path string
	// ReadConns is the size of the read pool (default 4).
	ReadConns int
}

// Store is a hub.Store on one SQLite database file. It is safe for
// concurrent use. Close it when done.
type Store struct {
	w   *sql.DB // one connection, BEGIN IMMEDIATE
	r   *sql.DB // read-only pool
	log *slog.Logger
	now func() time.Time

	appends    chan *appendReq // to appendLoop
	closing    chan struct{}   // closed by Close
	appendDone chan struct{}   // closed when appendLoop has returned
	closeOnce  sync.Once
}

var _ hub.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path and migrates it
// to the current schema.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("sqlite: empty path: %w", hub.ErrInvalid)
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = 4
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	q.Set("_cache_size", "-65536") // KiB: keep the hot B-tree pages in memory
	// Set before any table exists, so a new database can give pages back
	// (PruneTelemetry); older ones are converted once below.
	q.Set("_auto_vacuum", "incremental")
	w, err := sql.Open("sqlite3", "file:"+cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	s := &Store{w: w, log: log, now: time.Now,
		appends: make(chan *appendReq), closing: make(chan struct{}), appendDone: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	if err := s.ensureIncrementalVacuum(ctx); err != nil {
		w.Close()
		return nil, err
	}
	q.Del("_auto_vacuum")
	q.Set("_txlock", "deferred")
	q.Set("_query_only", "1")
	r, err := sql.Open("sqlite3", "file:"+cfg.Path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(cfg.ReadConns)
	r.SetMaxIdleConns(cfg.ReadConns)
	s.r = r
	go s.appendLoop()
	return s, nil
}

// DB returns the write connection pool, for benchmarks and tools that
// measure or inspect the database directly. Do not hold its connection.
func (s *Store) DB() *sql.DB { return s.w }

// Close stops the metrics writer (pending AppendMetrics calls fail with
// ErrClosed) and closes both pools. It is idempotent; no other method may
// be called after it.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.appendDone
		err = errors.Join(s.r.Close(), s.w.Close())
	})
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("sqlite: schema version %d is newer than this hub knows (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		err := s.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migrate to version %d: %w", v+1, err)
		}
		s.log.Info("migrated database", "version", v+1)
	}
	return nil
}

// write runs fn in a write transaction, committing if it returns nil.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// read runs fn in a read transaction (one consistent snapshot).
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return fn(tx)
}

func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique ||
		errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func workspaceID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, "SELECT id FROM workspaces WHERE name = ?", name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("workspace %q: %w", name, hub.ErrNotFound)
	}
	return id, err
}

// runRef is a run's internal id and status.
type runRef struct {
	id     int64
	status hub.RunStatus
}

func findRun(ctx context.Context, q querier, ws, uid string) (runRef, error) {
	wsID, err := workspaceID(ctx, q, ws)
	if err != nil {
		return runRef{}, err
	}
	var r runRef
	err = q.QueryRowContext(ctx, "SELECT id, status FROM runs WHERE uid = ? AND workspace_id = ?", uid, wsID).Scan(&r.id, &r.status)
	if errors.Is(err, sql.ErrNoRows) {
		return runRef{}, fmt.Errorf("run %q in workspace %q: %w", uid, ws, hub.ErrNotFound)
	}
	return r, err
}
