package blobfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/atelier-ml/atelier/hub"
)

// Store is a content-addressed blob store in a directory. It is safe for
// concurrent use, also by several processes sharing the directory.
type Store struct {
	dir string
	log *slog.Logger
}

var _ hub.Blobs = (*Store)(nil)

// Open prepares dir (creating it if needed) and returns a Store on it.
func Open(dir string, log *slog.Logger) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "sha256")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blobfs: %w", err)
		}
	}
	// Temporary files left by a crash are garbage.
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range ents {
			_ = os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return &Store{dir: dir, log: log}, nil
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Store) path(sum string) string {
	return filepath.Join(s.dir, "sha256", sum[:2], sum)
}

// Put implements hub.Blobs. It reads r to its end (or to max+1 bytes) and
// never holds more than a small buffer in memory.
func (s *Store) Put(ctx context.Context, r io.Reader, max int64) (hub.Blob, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // fails harmlessly once renamed
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), &ctxReader{ctx: ctx, r: io.LimitReader(r, max+1)})
	if err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	if n > max {
		return hub.Blob{}, fmt.Errorf("blob exceeds the limit of %d bytes: %w", max, hub.ErrTooLarge)
	}
	b := hub.Blob{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	dst := s.path(b.SHA256)
	if st, err := os.Stat(dst); err == nil && st.Size() == n {
		return b, nil // deduplicated
	}
	if err := tmp.Sync(); err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return hub.Blob{}, fmt.Errorf("blob put: %w", err)
	}
	return b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open implements hub.Blobs.
func (s *Store) Open(ctx context.Context, sum string) (io.ReadSeekCloser, hub.Blob, error) {
	if !shaRE.MatchString(sum) {
		return nil, hub.Blob{}, fmt.Errorf("blob %q: expected 64 lowercase hex digits: %w", sum, hub.ErrInvalid)
	}
	f, err := os.Open(s.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hub.Blob{}, fmt.Errorf("blob %s: %w", sum, hub.ErrNotFound)
	}
	if err != nil {
		return nil, hub.Blob{}, fmt.Errorf("blob %s: %w", sum, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, hub.Blob{}, fmt.Errorf("blob %s: %w", sum, err)
	}
	return f, hub.Blob{SHA256: sum, Size: st.Size()}, nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
