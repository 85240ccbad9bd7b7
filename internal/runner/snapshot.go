package runner

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/internal/runner/ignore"
)

// Ignore files read in every directory of a snapshot; a directory's
// .atelierignore takes precedence over its .gitignore.
const (
	GitIgnoreFile     = ".gitignore"
	AtelierIgnoreFile = ".atelierignore"
)

// snapshotTime is the modification time of every entry of a snapshot, so
// that the same tree always gives the same bytes.
var snapshotTime = time.Unix(0, 0).UTC()

// Limits bound a snapshot. Files counts regular files and symlinks; Bytes
// the sum of the sizes of regular files, before compression.
type Limits struct {
	MaxBytes int64
	MaxFiles int
}

// PackStats describes a packed snapshot.
type PackStats struct {
	Files int   // regular files and symlinks
	Dirs  int   // directories, the root excluded
	Bytes int64 // sum of the sizes of regular files
}

type entryKind uint8

const (
	kindFile entryKind = iota
	kindDir
	kindSymlink
)

type entry struct {
	rel  string // slash-separated, relative to the root
	kind entryKind
	size int64
	exec bool
	link string
}

// scanCapFactor bounds the scan of a tree far over the file limit (say,
// a home directory): it stops after this many times the limit, which is
// plenty to name the offenders.
const scanCapFactor = 50

// errScanCapped stops a scan that reached its cap.
var errScanCapped = errors.New("scan capped")

// scan lists what a snapshot of dir holds, in the order it is packed
// (depth first, names sorted bytewise), applying the ignore files and
// always leaving out .git. With maxFiles > 0 it stops once it has seen
// more than maxFiles files and symlinks, and reports capped.
func scan(ctx context.Context, dir string, maxFiles int, skip os.FileInfo) (entries []entry, capped bool, err error) {
	var m ignore.Matcher
	var out []entry
	files := 0
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, name := range []string{GitIgnoreFile, AtelierIgnoreFile} {
			p := filepath.Join(abs, name)
			if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
				data, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("read %s: %w", p, err)
				}
				m.Add(rel, data)
			}
		}
		des, err := os.ReadDir(abs)
		if err != nil {
			return fmt.Errorf("read directory %s: %w", abs, err)
		}
		// os.ReadDir sorts by name.
		for _, de := range des {
			if maxFiles > 0 && files > maxFiles {
				return errScanCapped
			}
			name := de.Name()
			if name == ".git" {
				continue
			}
			r := name
			if rel != "" {
				r = rel + "/" + name
			}
			isDir := de.IsDir()
			if ign, _ := m.Ignored(r, isDir); ign {
				continue
			}
			a := filepath.Join(abs, name)
			fi, err := os.Lstat(a)
			if err != nil {
				return fmt.Errorf("stat %s: %w", a, err)
			}
			switch mode := fi.Mode(); {
			case mode.IsDir():
				out = append(out, entry{rel: r, kind: kindDir})
				if err := walk(a, r); err != nil {
					return err
				}
			case mode.IsRegular():
				if skip != nil && os.SameFile(fi, skip) {
					continue // the snapshot being written, when TempDir is inside dir
				}
				out = append(out, entry{rel: r, kind: kindFile, size: fi.Size(), exec: mode.Perm()&0o111 != 0})
				files++
			case mode&fs.ModeSymlink != 0:
				link, err := os.Readlink(a)
				if err != nil {
					return fmt.Errorf("read symlink %s: %w", a, err)
				}
				out = append(out, entry{rel: r, kind: kindSymlink, link: filepath.ToSlash(link)})
				files++
			default:
				// Sockets, pipes and devices have no content to record.
			}
		}
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, false, err
	}
	if !fi.IsDir() {
		return nil, false, fmt.Errorf("not a directory: %w", ErrInvalidOptions)
	}
	if err := walk(dir, ""); errors.Is(err, errScanCapped) {
		return out, true, nil
	} else if err != nil {
		return nil, false, err
	}
	return out, false, nil
}

// checkLimits returns an error wrapping ErrTooLarge naming the limit
// exceeded and the biggest offenders.
// capped says the scan stopped early, so the counts are lower bounds.
func checkLimits(entries []entry, capped bool, lim Limits) (PackStats, error) {
	var st PackStats
	for _, e := range entries {
		switch e.kind {
		case kindDir:
			st.Dirs++
		case kindFile:
			st.Files++
			st.Bytes += e.size
		case kindSymlink:
			st.Files++
		}
	}
	overFiles := capped || (lim.MaxFiles > 0 && st.Files > lim.MaxFiles)
	overBytes := lim.MaxBytes > 0 && st.Bytes > lim.MaxBytes
	if !overFiles && !overBytes {
		return st, nil
	}
	var b strings.Builder
	switch {
	case capped:
		fmt.Fprintf(&b, "more than %d files (counting stopped there) exceed the limit of %d files", st.Files-1, lim.MaxFiles)
	case overBytes:
		fmt.Fprintf(&b, "%s in %d files exceeds the limit of %s", formatBytes(st.Bytes), st.Files, formatBytes(lim.MaxBytes))
	default:
		fmt.Fprintf(&b, "%d files exceed the limit of %d files", st.Files, lim.MaxFiles)
	}

	// Offenders: the entries of the directory where the excess sits (from
	// the root, descend while one subdirectory holds at least 80% of its
	// parent's files or bytes), and the biggest files.
	type agg struct {
		name  string
		files int
		bytes int64
	}
	aggOf := map[string]*agg{"": {}}
	children := map[string][]string{} // directory ("" or "a/b/") → child names, files and "x/" dirs
	var files []entry
	for _, e := range entries {
		name := e.rel
		if e.kind == kindDir {
			name += "/"
		}
		parent := ""
		if i := strings.LastIndex(e.rel, "/"); i >= 0 {
			parent = e.rel[:i+1]
		}
		aggOf[name] = &agg{name: name}
		children[parent] = append(children[parent], name)
		if e.kind == kindDir {
			continue
		}
		if e.kind == kindFile {
			files = append(files, e)
		}
		// Count the entry in itself and every directory above it.
		for p := name; ; {
			aggOf[p].files++
			aggOf[p].bytes += e.size
			if p == "" {
				break
			}
			i := strings.LastIndex(strings.TrimSuffix(p, "/"), "/")
			p = p[:i+1]
		}
	}
	metric := func(a *agg) int64 {
		if overBytes {
			return a.bytes
		}
		return int64(a.files)
	}
	focus := ""
	for {
		next := ""
		for _, c := range children[focus] {
			if strings.HasSuffix(c, "/") && metric(aggOf[c])*5 >= metric(aggOf[focus])*4 {
				next = c
			}
		}
		if next == "" {
			break
		}
		focus = next
	}
	aggs := make([]*agg, 0, len(children[focus])+1)
	if focus != "" {
		aggs = append(aggs, aggOf[focus])
	}
	for _, c := range children[focus] {
		aggs = append(aggs, aggOf[c])
	}
	plural := func(n int) string {
		if n == 1 {
			return "1 file"
		}
		return fmt.Sprintf("%d files", n)
	}
	sort.SliceStable(aggs, func(i, j int) bool { return metric(aggs[i]) > metric(aggs[j]) })
	if overBytes {
		b.WriteString("; biggest by size: ")
	} else {
		b.WriteString("; biggest by file count: ")
	}
	for i, a := range aggs[:min(5, len(aggs))] {
		if i > 0 {
			b.WriteString(", ")
		}
		if strings.HasSuffix(a.name, "/") {
			fmt.Fprintf(&b, "%s (%s, %s)", a.name, plural(a.files), formatBytes(a.bytes))
		} else {
			fmt.Fprintf(&b, "%s (%s)", a.name, formatBytes(a.bytes))
		}
	}
	if overBytes {
		sort.SliceStable(files, func(i, j int) bool { return files[i].size > files[j].size })
		b.WriteString("; biggest files: ")
		for i, f := range files[:min(5, len(files))] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%s)", f.rel, formatBytes(f.size))
		}
	}
	fmt.Fprintf(&b, "; leave them out with %s or %s (gitignore syntax)", AtelierIgnoreFile, GitIgnoreFile)
	return st, fmt.Errorf("%w: %s", ErrTooLarge, b.String())
}

func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// Pack writes a snapshot of dir to w as a tar.gz and returns what it holds.
// The snapshot honours .gitignore and .atelierignore files in dir and its
// subdirectories, leaves out every .git, stores symlinks as symlinks
// (never following them), and is deterministic: entries sorted, mtimes,
// owners and permissions normalized (0644, 0755 for executables and
// directories), so the same tree gives the same bytes. A tree over lim is
// refused before anything is written, with an error wrapping ErrTooLarge
// that names the limit and the biggest offenders. Pack does not close w.
func Pack(ctx context.Context, dir string, w io.Writer, lim Limits) (PackStats, error) {
	return pack(ctx, dir, w, lim, nil)
}

// pack is Pack leaving out the file skip (if not nil).
func pack(ctx context.Context, dir string, w io.Writer, lim Limits, skip os.FileInfo) (PackStats, error) {
	capAt := 0
	if lim.MaxFiles > 0 {
		capAt = scanCapFactor * lim.MaxFiles
	}
	entries, capped, err := scan(ctx, dir, capAt, skip)
	if err != nil {
		return PackStats{}, err
	}
	st, err := checkLimits(entries, capped, lim)
	if err != nil {
		return st, err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return st, err
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		h := &tar.Header{Name: e.rel, ModTime: snapshotTime, Format: tar.FormatPAX}
		switch e.kind {
		case kindDir:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, e.rel+"/", 0o755
		case kindSymlink:
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		case kindFile:
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, e.size, 0o644
			if e.exec {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return st, fmt.Errorf("pack %s: %w", e.rel, err)
		}
		if e.kind == kindFile {
			if err := copyFile(tw, filepath.Join(dir, filepath.FromSlash(e.rel)), e.size); err != nil {
				return st, fmt.Errorf("pack %s: %w", e.rel, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("pack: %w", err)
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("pack: %w", err)
	}
	return st, nil
}

func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyN(w, f, size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("file shrank from %d to %d bytes while being packed", size, n)
		}
		return err
	}
	return nil
}

// Extract unpacks a snapshot written by Pack into dst, which must exist
// and should be empty. It refuses entries that would land outside dst
// (absolute names, "..", or a path through a symlink of the snapshot) and
// more than lim. Files get the permissions recorded; times are not
// restored.
func Extract(ctx context.Context, r io.Reader, dst string, lim Limits) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("extract snapshot: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	links := map[string]bool{}
	var files int
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract snapshot: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		clean := path.Clean(name)
		if name == "" || clean != name || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("extract snapshot: entry %q: not a clean relative path", h.Name)
		}
		for p := path.Dir(clean); p != "."; p = path.Dir(p) {
			if links[p] {
				return fmt.Errorf("extract snapshot: entry %q: parent %q is a symlink", h.Name, p)
			}
		}
		target := filepath.Join(dst, filepath.FromSlash(clean))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("extract snapshot: %w", err)
			}
		case tar.TypeReg:
			files++
			total += h.Size
			if (lim.MaxFiles > 0 && files > lim.MaxFiles) || (lim.MaxBytes > 0 && total > lim.MaxBytes) {
				return fmt.Errorf("extract snapshot: more than %d files or %s: %w", lim.MaxFiles, formatBytes(lim.MaxBytes), ErrTooLarge)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("extract snapshot: %w", err)
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("extract snapshot: %w", err)
			}
			_, err = io.CopyN(f, tr, h.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract snapshot: %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			files++
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("extract snapshot: %w", err)
			}
			if err := os.Symlink(filepath.FromSlash(h.Linkname), target); err != nil {
				return fmt.Errorf("extract snapshot: %w", err)
			}
			links[clean] = true
		default:
			return fmt.Errorf("extract snapshot: entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}
