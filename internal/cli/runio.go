package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
)

func (a *app) runDownloadCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "download RUN [PATH]",
		Short: "Download the artifacts of a run (all, one file, or one directory)",
		Long: `Download artifacts of a run into --to (default: the current directory),
keeping their relative paths. PATH selects one artifact or every artifact under
a directory; without PATH all are downloaded. Each file is checked against its
sha256 and written atomically (temporary file, then rename).`,
		Args: argsRange(1, 2, "RUN [PATH]"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			ctx := cmd.Context()
			c := a.client()
			arts, err := c.ListArtifacts(ctx, ws, args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				sel := strings.Trim(args[1], "/")
				var keep []hub.Artifact
				for _, x := range arts {
					if x.Path == sel || strings.HasPrefix(x.Path, sel+"/") {
						keep = append(keep, x)
					}
				}
				if len(keep) == 0 {
					return fmt.Errorf("run %q has no artifact %q (see `atelier run artifacts %s`): %w", args[0], sel, args[0], hub.ErrNotFound)
				}
				arts = keep
			}
			var total int64
			for _, x := range arts {
				if err := a.downloadArtifact(ctx, ws, args[0], x, to); err != nil {
					return err
				}
				total += x.Size
			}
			if a.output != formatTable {
				return a.emit(arts, nil)
			}
			noun := "artifacts"
			if len(arts) == 1 {
				noun = "artifact"
			}
			fmt.Fprintf(a.stdout, "downloaded %d %s (%s) to %s\n", len(arts), noun, fmtSize(total), to)
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", ".", "directory to download into")
	return cmd
}

// downloadArtifact writes artifact x of a run under dir, verifying its
// sha256, through a temporary file renamed into place.
func (a *app) downloadArtifact(ctx context.Context, ws, run string, x hub.Artifact, dir string) error {
	if !filepath.IsLocal(filepath.FromSlash(x.Path)) {
		return fmt.Errorf("artifact %q: refusing a path that leaves the target directory", x.Path)
	}
	dst := filepath.Join(dir, filepath.FromSlash(x.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("download %s: %w", x.Path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".atelier-download-*")
	if err != nil {
		return fmt.Errorf("download %s: %w", x.Path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	p := a.newProgress("downloading "+x.Path, x.Size)
	err = a.client().GetArtifact(ctx, ws, run, x.Path, io.MultiWriter(tmp, h, p))
	p.done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", x.Path, err)
	}
	if err := checkSum(h, x.SHA256); err != nil {
		return fmt.Errorf("download %s: %w", x.Path, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("download %s: %w", x.Path, err)
	}
	return nil
}

func checkSum(h hash.Hash, want string) error {
	if want == "" {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("content has sha256 %s, the hub lists %s", got, want)
	}
	return nil
}

func (a *app) runSnapshotCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "snapshot RUN --to FILE|DIR",
		Short: "Download the script snapshot of a run (a tar.gz file, or extracted into a directory)",
		Long: `Download the script snapshot of a run. If --to is an existing directory (or
ends with a slash) the snapshot is extracted into it; otherwise it is written
as a tar.gz file at that path.`,
		Args: argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			if to == "" {
				return usageError("%s: --to FILE|DIR is required", cmd.CommandPath())
			}
			ctx := cmd.Context()
			r, err := a.client().GetRun(ctx, ws, args[0])
			if err != nil {
				return err
			}
			if r.Snapshot == nil {
				return fmt.Errorf("run %q has no snapshot: %w", args[0], hub.ErrNotFound)
			}
			fi, statErr := os.Stat(to)
			extract := strings.HasSuffix(to, "/") || strings.HasSuffix(to, string(filepath.Separator)) || (statErr == nil && fi.IsDir())
			if extract {
				if err := a.extractSnapshot(ctx, ws, r, to); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "extracted the snapshot of run %s into %s\n", r.ID, to)
				return nil
			}
			if err := a.downloadSnapshotFile(ctx, ws, r, to); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote the snapshot of run %s to %s (%s)\n", r.ID, to, fmtSize(r.Snapshot.Size))
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "tar.gz file to write, or directory to extract into")
	return cmd
}

func (a *app) downloadSnapshotFile(ctx context.Context, ws string, r *hub.Run, dst string) error {
	if dir := filepath.Dir(dst); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".atelier-snapshot-*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	p := a.newProgress("downloading snapshot", r.Snapshot.Size)
	err = a.client().GetSnapshot(ctx, ws, r.ID, io.MultiWriter(tmp, h, p))
	p.done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkSum(h, r.Snapshot.SHA256)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("snapshot of run %s: %w", r.ID, err)
	}
	return nil
}

// extractSnapshot streams the snapshot through gunzip and untar into dir.
func (a *app) extractSnapshot(ctx context.Context, ws string, r *hub.Run, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	pr, pw := io.Pipe()
	h := sha256.New()
	p := a.newProgress("downloading snapshot", r.Snapshot.Size)
	go func() {
		err := a.client().GetSnapshot(ctx, ws, r.ID, io.MultiWriter(pw, h, p))
		pw.CloseWithError(err)
	}()
	err := untar(pr, dir)
	pr.CloseWithError(errors.New("extraction stopped"))
	p.done()
	if err != nil {
		return fmt.Errorf("snapshot of run %s: %w", r.ID, err)
	}
	if err := checkSum(h, r.Snapshot.SHA256); err != nil {
		return fmt.Errorf("snapshot of run %s: %w", r.ID, err)
	}
	return nil
}

// untar extracts a tar.gz stream into dir: directories, regular files and
// symlinks whose targets stay inside dir; anything else, and any path that
// leaves dir, is an error.
func untar(r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("untar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			return fmt.Errorf("untar: entry %q leaves the target directory", hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("untar %s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			target := filepath.Join(filepath.Dir(filepath.FromSlash(name)), filepath.FromSlash(hdr.Linkname))
			if filepath.IsAbs(hdr.Linkname) || !filepath.IsLocal(target) {
				return fmt.Errorf("untar: symlink %q points outside the snapshot (%q)", hdr.Name, hdr.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("untar: entry %q has unsupported type %q", hdr.Name, hdr.Typeflag)
		}
	}
	// Drain the gzip trailer so its checksum is verified.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	return nil
}

// progress reports the bytes of a transfer on stderr, but only when stderr
// is a terminal and the transfer has lasted over a second. It is an
// io.Writer counting what passes; done ends the report.
type progress struct {
	mu      sync.Mutex
	n       int64
	total   int64
	label   string
	w       io.Writer
	start   time.Time
	shown   bool
	stop    chan struct{}
	stopped chan struct{}
}

func (a *app) newProgress(label string, total int64) *progress {
	p := &progress{label: label, total: total, w: a.stderr, start: time.Now()}
	if !isTerminal(a.stderr) {
		return p
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				if now.Sub(p.start) >= time.Second {
					p.print()
				}
			}
		}
	}()
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.n += int64(len(b))
	p.mu.Unlock()
	return len(b), nil
}

func (p *progress) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shown = true
	pct := ""
	if p.total > 0 {
		pct = fmt.Sprintf(" %3.0f%%", 100*float64(p.n)/float64(p.total))
	}
	rate := float64(p.n) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "\r%s: %s / %s%s (%s/s)   ", p.label, fmtSize(p.n), fmtSize(p.total), pct, fmtSize(int64(rate)))
}

// done stops the reporting, ending the line if anything was shown.
func (p *progress) done() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	shown := p.shown
	p.mu.Unlock()
	if shown {
		p.print()
		fmt.Fprintln(p.w)
	}
}
