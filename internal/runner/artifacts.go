package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// OutputsDir is the directory, relative to the working copy, whose files
// are uploaded as the run's artifacts when the command exits.
const OutputsDir = "outputs"

// progressAfter is how long an upload runs before progress is shown.
const progressAfter = time.Second

// uploadOutputs uploads every regular file under outputs/ in the working
// copy, in path order, as an artifact named by its path relative to
// outputs/. Symlinks and other non-regular files are skipped with a
// warning. It returns an error wrapping ErrRecording naming what failed.
func (s *session) uploadOutputs(ctx context.Context, work string) error {
	root := filepath.Join(work, OutputsDir)
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || !fi.IsDir() {
		s.warn("%s is not a directory; no artifacts uploaded", OutputsDir)
		return nil
	}
	var failed []string
	var count int
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p, err))
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if !d.Type().IsRegular() {
			s.warn("artifact %s: not a regular file (%s); skipped", rel, d.Type())
			return nil
		}
		if err := s.uploadArtifact(ctx, p, rel); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", rel, err))
			s.warn("artifact %s: %v", rel, err)
			return nil
		}
		count++
		return nil
	})
	if err != nil {
		failed = append(failed, err.Error())
	}
	if count > 0 {
		s.say("uploaded %d artifacts from %s/", count, OutputsDir)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d artifacts not uploaded: %s", ErrRecording, len(failed), joinProblems(failed))
	}
	return nil
}

func (s *session) uploadArtifact(ctx context.Context, p, rel string) error {
	return s.retry(hubCtx(ctx), "upload artifact "+rel, 3, func(ctx context.Context) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		// Not the *os.File itself: an HTTP client closes an io.Closer body.
		var r io.Reader = io.NewSectionReader(f, 0, fi.Size())
		if s.showProgress() {
			pr := &progressReader{r: r, total: fi.Size(), name: rel, w: s.stderr, start: time.Now()}
			defer pr.done()
			r = pr
		}
		_, err = s.h.PutArtifact(ctx, s.opts.Workspace, s.run.ID, rel, r, fi.Size())
		return err
	})
}

func (s *session) showProgress() bool {
	if s.opts.Progress != nil {
		return *s.opts.Progress
	}
	return isTerminal(s.stderrRaw)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressReader reports the progress of an upload on w, on one line
// rewritten in place, once the upload has run for progressAfter, at most
// every 200 ms. It is used by one goroutine.
type progressReader struct {
	r       io.Reader
	total   int64
	n       int64
	name    string
	w       io.Writer
	start   time.Time
	last    time.Time
	printed bool
	now     func() time.Time // nil means time.Now
}

func (p *progressReader) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	now := p.clock()
	if now.Sub(p.start) >= progressAfter && now.Sub(p.last) >= 200*time.Millisecond {
		p.last = now
		p.printed = true
		fmt.Fprintf(p.w, "\r%s", progressLine(p.name, p.n, p.total, now.Sub(p.start)))
	}
	return n, err
}

func (p *progressReader) done() {
	if p.printed {
		fmt.Fprintf(p.w, "\r%s\n", progressLine(p.name, p.n, p.total, p.clock().Sub(p.start)))
	}
}

// progressLine formats one progress report.
func progressLine(name string, n, total int64, elapsed time.Duration) string {
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(n) / float64(total)
	}
	rate := ""
	if secs := elapsed.Seconds(); secs > 0 {
		rate = fmt.Sprintf("  %s/s", formatBytes(int64(float64(n)/secs)))
	}
	return fmt.Sprintf("atelier: uploading %s  %s / %s  %3.0f%%%s", name, formatBytes(n), formatBytes(total), pct, rate)
}
