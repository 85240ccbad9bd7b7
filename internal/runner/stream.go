package runner

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// lockedWriter serializes writes to a terminal shared by the command's
// output and Submit's own messages.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lineSplitter is the io.Writer given to the command for one stream. It
// copies the bytes to the terminal as they come (progress bars keep
// working) and cuts them into lines for onLine, in order: a line longer
// than max bytes is emitted in chunks of at most max bytes (cut at a UTF-8
// boundary), marked as continuations after the first. A trailing "\r" is
// dropped from each line. Write is called from one goroutine at a time
// (exec.Cmd's copier); Close emits an unterminated last line.
type lineSplitter struct {
	term   io.Writer
	max    int
	onLine func(text string, continued bool)

	buf       []byte
	continued bool // the next line emitted continues a split line
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	// The terminal may have gone away (a closed pipe); the run goes on
	// and is still recorded.
	_, _ = s.term.Write(p)
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i >= 0 && i <= s.max {
			s.emit(s.buf[:i], false)
			s.buf = s.buf[i+1:]
			continue
		}
		if len(s.buf) > s.max || (i > s.max) {
			cut := s.max
			// Back off to the start of a rune so no character is split.
			for k := 0; k < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s.buf[cut]); k++ {
				cut--
			}
			if cut == 0 {
				cut = s.max
			}
			s.emit(s.buf[:cut], true)
			s.buf = s.buf[cut:]
			continue
		}
		break
	}
	// Keep the buffer from pinning a large backing array.
	if len(s.buf) == 0 && cap(s.buf) > 4*s.max {
		s.buf = nil
	}
	return len(p), nil
}

func (s *lineSplitter) emit(b []byte, more bool) {
	text := validText(string(bytes.TrimSuffix(b, []byte("\r"))), s.max)
	s.onLine(text, s.continued)
	s.continued = more
}

// Close emits what is left as a last line.
func (s *lineSplitter) Close() {
	if len(s.buf) > 0 {
		s.emit(s.buf, false)
		s.buf = nil
	}
}

// validText makes text valid UTF-8 (the hub stores text, and JSON would
// replace invalid bytes anyway) without growing it past max bytes: invalid
// sequences become U+FFFD, or '?' when that would be too long.
func validText(text string, max int) string {
	if utf8.ValidString(text) {
		return text
	}
	if t := strings.ToValidUTF8(text, "\uFFFD"); len(t) <= max {
		return t
	}
	return strings.ToValidUTF8(text, "?")
}
