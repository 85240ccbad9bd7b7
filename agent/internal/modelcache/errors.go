package modelcache

import (
	"errors"
	"fmt"
)

var (
	// ErrNotCached means the digest is not in the cache.
	ErrNotCached = errors.New("model not cached")
	// ErrDigestMismatch means a chunk or a whole file did not hash to the
	// expected sha256. Errors that match it are *DigestMismatchError.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrInvalidRef means a ModelRef is inconsistent (bad digest syntax,
	// chunk count that does not match size and chunk size, ...).
	ErrInvalidRef = errors.New("invalid model reference")
	// ErrBadChunk means a chunk arrived with the wrong length.
	ErrBadChunk = errors.New("bad chunk")
	// ErrBadProgress means a partial-transfer progress record could not be
	// parsed; the cache then re-verifies the partial file from its start.
	ErrBadProgress = errors.New("bad progress record")
)

// DigestMismatchError reports what failed verification and both digests.
// It matches ErrDigestMismatch with errors.Is.
type DigestMismatchError struct {
	// What was checked: "chunk 3" or "file".
	What     string
	Expected string
	Actual   string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s: digest mismatch: expected sha256 %s, got %s", e.What, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrDigestMismatch) true.
func (e *DigestMismatchError) Is(target error) bool { return target == ErrDigestMismatch }
