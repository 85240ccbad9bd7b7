package modelcache

import (
	"fmt"
	"strconv"
	"strings"
)

// progressMagic starts every progress record; it versions the format.
const progressMagic = "atelier-partial/1"

// progress is the persisted state of one partial transfer: the digest, the
// chunk size the partial file was cut with, and the index of the next chunk
// to fetch (every chunk before it is verified and fsynced in the .part file).
type progress struct {
	sha       string
	chunkSize uint32
	next      uint32
}

// marshal encodes p as one line: "atelier-partial/1 <sha256> <chunk_size> <next>\n".
func (p progress) marshal() []byte {
	return fmt.Appendf(nil, "%s %s %d %d\n", progressMagic, p.sha, p.chunkSize, p.next)
}

// parseProgress decodes a record written by marshal. It is strict: any other
// shape is an error wrapping ErrBadProgress that says what was wrong.
func parseProgress(b []byte) (progress, error) {
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		return progress{}, fmt.Errorf("%w: missing trailing newline", ErrBadProgress)
	}
	f := strings.Split(strings.TrimSuffix(s, "\n"), " ")
	if len(f) != 4 {
		return progress{}, fmt.Errorf("%w: %d fields, expected 4", ErrBadProgress, len(f))
	}
	if f[0] != progressMagic {
		return progress{}, fmt.Errorf("%w: header %q, expected %q", ErrBadProgress, f[0], progressMagic)
	}
	if !validDigest(f[1]) {
		return progress{}, fmt.Errorf("%w: digest %q is not 64 lower-case hex digits", ErrBadProgress, f[1])
	}
	cs, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil || cs == 0 || f[2] != strconv.FormatUint(cs, 10) {
		return progress{}, fmt.Errorf("%w: chunk size %q is not a positive decimal uint32", ErrBadProgress, f[2])
	}
	next, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil || f[3] != strconv.FormatUint(next, 10) {
		return progress{}, fmt.Errorf("%w: next index %q is not a decimal uint32", ErrBadProgress, f[3])
	}
	return progress{sha: f[1], chunkSize: uint32(cs), next: uint32(next)}, nil
}

// validDigest reports whether s is a lower-case hex sha256.
func validDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidDigest reports whether s is a lower-case hex sha256, the only digest
// syntax the cache accepts.
func ValidDigest(s string) bool { return validDigest(s) }
