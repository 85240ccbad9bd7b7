package modelcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/agent/internal/fsutil"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// MaxChunkSize bounds ModelRef.chunk_size: a chunk must fit one MQTT message
// under the broker's default 1 MiB payload limit.
const MaxChunkSize = 1 << 20

// DefaultKeep is how many unused models GC keeps when Config.Keep is 0.
const DefaultKeep = 3

// ChunkSource delivers one chunk of a model blob. The cache verifies every
// chunk it returns, so a source need not.
type ChunkSource interface {
	Chunk(ctx context.Context, sha256 string, index uint32) ([]byte, error)
}

// ChunkCounter is optionally implemented by a ChunkSource that fetches ahead:
// Fetch calls ExpectChunks with the blob's chunk count before its first Chunk
// call, so the source never asks for an index past the end.
type ChunkCounter interface {
	ExpectChunks(sha256 string, count uint32)
}

// Config configures a Cache.
type Config struct {
	// Dir is the cache directory (DATA/models). It is created if missing.
	Dir string
	// Keep is how many models not in use GC keeps, most recently used
	// first. 0 means DefaultKeep; negative keeps none.
	Keep int
	// SyncBytes is how many bytes of a transfer are appended between two
	// fsyncs of the partial file and its progress record (0 means
	// DefaultSyncBytes; 1 syncs every chunk). A crash loses at most this
	// much of a transfer, which is fetched again; an error (a lost
	// connection, a cancelled context) syncs what was verified first.
	SyncBytes int64
}

// DefaultSyncBytes is Config.SyncBytes's default: 4 MiB, 16 chunks of the
// hub's default 256 KiB. Syncing every chunk cost two fsyncs per 256 KiB,
// which on one disk shared by many transfers was most of a rollout's time.
const DefaultSyncBytes = 4 << 20

// Cache is a content-addressed store of model files under Config.Dir. It is
// safe for concurrent use; Fetch calls are serialized (one transfer at a
// time), Get and GC may run beside them.
type Cache struct {
	dir       string
	partial   string
	keep      int
	syncBytes int64
	log       *slog.Logger

	fetchMu sync.Mutex // serializes Fetch
	mu      sync.Mutex // guards the final files (verify/remove/GC)
}

// New opens (creating if needed) the cache directory and its partial/
// subdirectory.
func New(cfg Config, log *slog.Logger) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("modelcache: Config.Dir is empty")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keep := cfg.Keep
	if keep == 0 {
		keep = DefaultKeep
	}
	if keep < 0 {
		keep = 0
	}
	syncBytes := cfg.SyncBytes
	if syncBytes <= 0 {
		syncBytes = DefaultSyncBytes
	}
	c := &Cache{dir: cfg.Dir, partial: filepath.Join(cfg.Dir, "partial"), keep: keep, syncBytes: syncBytes, log: log}
	if err := os.MkdirAll(c.partial, 0o755); err != nil {
		return nil, fmt.Errorf("modelcache: %w", err)
	}
	return c, nil
}

// Path is where the model with this digest lives once cached.
func (c *Cache) Path(sha string) string { return filepath.Join(c.dir, sha) }

// Has reports whether a file for the digest exists, without verifying it.
func (c *Cache) Has(sha string) bool {
	if !validDigest(sha) {
		return false
	}
	_, err := os.Stat(c.Path(sha))
	return err == nil
}

// Get returns the path of the cached model after re-hashing the file (cost:
// one read of the file). A file whose digest does not match is removed and a
// *DigestMismatchError returned; a missing one gives ErrNotCached. Get marks
// the model as recently used for GC.
func (c *Cache) Get(sha string) (string, error) {
	if !validDigest(sha) {
		return "", fmt.Errorf("get %q: %w: digest is not 64 lower-case hex digits", sha, ErrInvalidRef)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(sha)
}

func (c *Cache) getLocked(sha string) (string, error) {
	p := c.Path(sha)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("get %s: %w", sha, ErrNotCached)
	}
	if err != nil {
		return "", fmt.Errorf("get %s: %w", sha, err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	_ = f.Close()
	if err != nil {
		return "", fmt.Errorf("get %s: %w", sha, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		c.log.Warn("cached model corrupt, removing", "sha256", sha, "actual_sha256", got)
		if rerr := os.Remove(p); rerr != nil {
			c.log.Error("remove corrupt model", "path", p, "error", rerr)
		}
		return "", fmt.Errorf("get %s: %w", sha, &DigestMismatchError{What: "cached file", Expected: sha, Actual: got})
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now)
	return p, nil
}

// ValidateRef checks that a ModelRef is self-consistent: a lower-case hex
// digest, a chunk size in (0, MaxChunkSize], and exactly
// ceil(size/chunk_size) chunk digests, each lower-case hex.
func ValidateRef(ref *agentv1.ModelRef) error {
	if ref == nil {
		return fmt.Errorf("%w: missing", ErrInvalidRef)
	}
	if !validDigest(ref.GetSha256()) {
		return fmt.Errorf("%w: sha256 %q is not 64 lower-case hex digits", ErrInvalidRef, ref.GetSha256())
	}
	cs := uint64(ref.GetChunkSize())
	if cs == 0 || cs > MaxChunkSize {
		return fmt.Errorf("%w: chunk_size %d not in [1, %d]", ErrInvalidRef, cs, MaxChunkSize)
	}
	want := (ref.GetSize() + cs - 1) / cs
	if want > 1<<32-1 {
		return fmt.Errorf("%w: size %d needs more than 2^32-1 chunks", ErrInvalidRef, ref.GetSize())
	}
	if got := uint64(len(ref.GetChunkSha256())); got != want {
		return fmt.Errorf("%w: %d chunk digests for size %d and chunk_size %d, expected %d", ErrInvalidRef, got, ref.GetSize(), cs, want)
	}
	for i, d := range ref.GetChunkSha256() {
		if !validDigest(d) {
			return fmt.Errorf("%w: chunk_sha256[%d] %q is not 64 lower-case hex digits", ErrInvalidRef, i, d)
		}
	}
	return nil
}

// chunkLen is the length of chunk i of ref.
func chunkLen(ref *agentv1.ModelRef, i uint32) int64 {
	cs := int64(ref.GetChunkSize())
	off := int64(i) * cs
	return min(cs, int64(ref.GetSize())-off)
}

// Fetch makes sure the model ref describes is in the cache and returns its
// path. A digest already cached (and still matching) is never transferred
// again. Otherwise chunks are fetched from src in order, each verified
// against ref.chunk_sha256 on arrival and appended to partial/<sha>.part;
// every Config.SyncBytes (and before returning an error) the file is
// fsynced and the next index recorded in partial/<sha>.progress; after a
// crash or an error the next Fetch resumes after the last recorded chunk.
// When all chunks are in, the whole file's sha256 is checked, then the file
// is renamed to <sha> and the directory fsynced.
//
// progress, if not nil, is called with the bytes verified so far (including
// those resumed from disk). Errors: ErrInvalidRef, *DigestMismatchError
// (for a chunk: the verified prefix is kept; for the whole file: the
// partial is discarded), ErrBadChunk, or src's error, wrapped.
func (c *Cache) Fetch(ctx context.Context, ref *agentv1.ModelRef, src ChunkSource, progressFn func(done uint64)) (string, error) {
	if err := ValidateRef(ref); err != nil {
		return "", fmt.Errorf("fetch model: %w", err)
	}
	sha := ref.GetSha256()
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()

	c.mu.Lock()
	p, err := c.getLocked(sha)
	c.mu.Unlock()
	if err == nil {
		if progressFn != nil {
			progressFn(ref.GetSize())
		}
		return p, nil
	}
	if !errors.Is(err, ErrNotCached) && !errors.Is(err, ErrDigestMismatch) {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	if src == nil {
		return "", fmt.Errorf("fetch %s: %w (and no chunk source)", sha, ErrNotCached)
	}
	return c.transfer(ctx, ref, src, progressFn)
}

func (c *Cache) partPath(sha string) string     { return filepath.Join(c.partial, sha+".part") }
func (c *Cache) progressPath(sha string) string { return filepath.Join(c.partial, sha+".progress") }

func (c *Cache) transfer(ctx context.Context, ref *agentv1.ModelRef, src ChunkSource, progressFn func(uint64)) (string, error) {
	sha := ref.GetSha256()
	n := uint32(len(ref.GetChunkSha256()))
	part, err := os.OpenFile(c.partPath(sha), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	defer part.Close()
	prog, err := os.OpenFile(c.progressPath(sha), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	defer prog.Close()
	if err := fsutil.SyncDir(c.partial); err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}

	h := sha256.New()
	next, err := c.resume(ref, part, prog, h)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	done := uint64(next) * uint64(ref.GetChunkSize())
	if next > 0 {
		c.log.Info("resuming model transfer", "sha256", sha, "next_chunk", next, "chunks", n, "bytes", done)
	}
	if progressFn != nil {
		progressFn(done)
	}
	if cc, ok := src.(ChunkCounter); ok {
		cc.ExpectChunks(sha, n)
	}
	// checkpoint makes the verified prefix [0, upTo) durable and records it.
	synced, unsynced := next, int64(0)
	checkpoint := func(upTo uint32) error {
		if upTo == synced {
			return nil
		}
		if err := part.Sync(); err != nil {
			return fmt.Errorf("fsync before chunk %d: %w", upTo, err)
		}
		if err := writeProgress(prog, progress{sha: sha, chunkSize: ref.GetChunkSize(), next: upTo}); err != nil {
			return err
		}
		synced, unsynced = upTo, 0
		return nil
	}
	// fail keeps what was verified for the next Fetch, then returns err.
	fail := func(upTo uint32, err error) (string, error) {
		if cerr := checkpoint(upTo); cerr != nil {
			c.log.Warn("partial transfer not checkpointed; it restarts from the last checkpoint", "sha256", sha, "error", cerr)
		}
		return "", err
	}
	for i := next; i < n; i++ {
		data, err := src.Chunk(ctx, sha, i)
		if err != nil {
			return fail(i, fmt.Errorf("fetch %s: chunk %d of %d: %w", sha, i, n, err))
		}
		if want := chunkLen(ref, i); int64(len(data)) != want {
			return fail(i, fmt.Errorf("fetch %s: chunk %d of %d: %w: %d bytes, expected %d", sha, i, n, ErrBadChunk, len(data), want))
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != ref.GetChunkSha256()[i] {
			return fail(i, fmt.Errorf("fetch %s: %w", sha, &DigestMismatchError{What: fmt.Sprintf("chunk %d of %d", i, n), Expected: ref.GetChunkSha256()[i], Actual: got}))
		}
		if _, err := part.Write(data); err != nil {
			// The file may now hold part of this chunk: resume re-hashes
			// and cuts it.
			return fail(i, fmt.Errorf("fetch %s: write chunk %d: %w", sha, i, err))
		}
		h.Write(data)
		if unsynced += int64(len(data)); unsynced >= c.syncBytes {
			if err := checkpoint(i + 1); err != nil {
				return "", fmt.Errorf("fetch %s: %w", sha, err)
			}
		}
		done += uint64(len(data))
		if progressFn != nil {
			progressFn(done)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		// Every chunk matched its digest yet the file does not: the ref
		// itself is wrong. Nothing here is worth resuming.
		c.discard(sha)
		return "", fmt.Errorf("fetch %s: %w", sha, &DigestMismatchError{What: "file", Expected: sha, Actual: got})
	}
	// The data must be on disk before the rename makes it the model.
	if err := part.Sync(); err != nil {
		return "", fmt.Errorf("fetch %s: fsync: %w", sha, err)
	}
	if err := part.Close(); err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	final := c.Path(sha)
	c.mu.Lock()
	err = os.Rename(c.partPath(sha), final)
	c.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	if err := fsutil.SyncDir(c.dir); err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha, err)
	}
	_ = prog.Close()
	if err := os.Remove(c.progressPath(sha)); err != nil {
		c.log.Warn("remove progress record", "sha256", sha, "error", err)
	}
	c.log.Info("model cached", "sha256", sha, "bytes", ref.GetSize(), "chunks", n)
	return final, nil
}

// resume finds where a partial transfer stopped. It trusts the progress
// record only as an upper bound: every chunk before it is re-read and
// re-hashed, the first bad one and everything after it are cut off. It
// feeds the verified prefix into h and leaves part positioned at its end.
func (c *Cache) resume(ref *agentv1.ModelRef, part, prog *os.File, h hash.Hash) (uint32, error) {
	sha := ref.GetSha256()
	n := uint32(len(ref.GetChunkSha256()))
	claim := uint32(0)
	raw, err := io.ReadAll(prog)
	if err != nil {
		return 0, err
	}
	if len(raw) > 0 {
		p, err := parseProgress(raw)
		switch {
		case err != nil:
			c.log.Warn("progress record unreadable, re-verifying partial file", "sha256", sha, "error", err)
			claim = n
		case p.sha != sha || p.chunkSize != ref.GetChunkSize():
			c.log.Warn("progress record is for another layout, restarting transfer", "sha256", sha, "record_sha256", p.sha, "record_chunk_size", p.chunkSize)
		default:
			claim = min(p.next, n)
		}
	}
	buf := make([]byte, ref.GetChunkSize())
	var next uint32
	for next < claim {
		b := buf[:chunkLen(ref, next)]
		if _, err := io.ReadFull(part, b); err != nil {
			break
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != ref.GetChunkSha256()[next] {
			c.log.Warn("partial file chunk corrupt, resuming before it", "sha256", sha, "chunk", next)
			break
		}
		h.Write(b)
		next++
	}
	off := int64(next) * int64(ref.GetChunkSize())
	if err := part.Truncate(off); err != nil {
		return 0, err
	}
	if _, err := part.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	if err := part.Sync(); err != nil {
		return 0, err
	}
	if err := writeProgress(prog, progress{sha: sha, chunkSize: ref.GetChunkSize(), next: next}); err != nil {
		return 0, err
	}
	return next, nil
}

// writeProgress overwrites the progress record in place and fsyncs it. A
// torn record is harmless: resume re-verifies the partial file by hash.
func writeProgress(f *os.File, p progress) error {
	b := p.marshal()
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write progress: %w", err)
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("write progress: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write progress: fsync: %w", err)
	}
	return nil
}

func (c *Cache) discard(sha string) {
	for _, p := range []string{c.partPath(sha), c.progressPath(sha)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("remove partial transfer", "path", p, "error", err)
		}
	}
}

// GC removes cached models that are neither in inUse nor among the
// Config.Keep most recently used of the rest, and partial transfers whose
// digest is not in inUse. It returns the digests of removed models.
func (c *Cache) GC(inUse []string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	type entry struct {
		sha string
		mod time.Time
	}
	var rest []entry
	for _, e := range ents {
		if !e.Type().IsRegular() || !validDigest(e.Name()) || slices.Contains(inUse, e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		rest = append(rest, entry{e.Name(), info.ModTime()})
	}
	slices.SortFunc(rest, func(a, b entry) int { return b.mod.Compare(a.mod) })
	var removed []string
	for _, e := range rest[min(c.keep, len(rest)):] {
		if err := os.Remove(c.Path(e.sha)); err != nil {
			return removed, fmt.Errorf("gc: %w", err)
		}
		removed = append(removed, e.sha)
	}
	if c.fetchMu.TryLock() { // leave partials alone while a transfer runs
		defer c.fetchMu.Unlock()
		pents, err := os.ReadDir(c.partial)
		if err != nil {
			return removed, fmt.Errorf("gc: %w", err)
		}
		for _, e := range pents {
			sha, _, _ := strings.Cut(e.Name(), ".")
			if !slices.Contains(inUse, sha) {
				_ = os.Remove(filepath.Join(c.partial, e.Name()))
			}
		}
	}
	if len(removed) > 0 {
		c.log.Info("model cache gc", "removed", len(removed))
		if err := fsutil.SyncDir(c.dir); err != nil {
			return removed, fmt.Errorf("gc: %w", err)
		}
	}
	return removed, nil
}
