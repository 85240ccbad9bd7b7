package runner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/pack/*.txtar")

// listSnapshot returns the entry names of a tar.gz, directories ending in
// "/", symlinks as "name -> target".
func listSnapshot(t *testing.T, data []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		n := h.Name
		if h.Typeflag == tar.TypeSymlink {
			n += " -> " + h.Linkname
		}
		if !h.ModTime.Equal(snapshotTime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("entry %s: mtime %v uid %d gid %d uname %q gname %q not normalized", n, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		names = append(names, n)
	}
}

// TestPackGolden packs each tree of testdata/pack/*.txtar (files under
// tree/) and compares the snapshot's entries with its want section.
func TestPackGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/pack/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var want string
			wantIdx := -1
			for i, f := range ar.Files {
				if f.Name == "want" {
					want, wantIdx = string(f.Data), i
					continue
				}
				rel, ok := strings.CutPrefix(f.Name, "tree/")
				if !ok {
					t.Fatalf("file %q: want tree/... or want", f.Name)
				}
				p := filepath.Join(dir, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			if _, err := Pack(context.Background(), dir, &buf, Limits{}); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(listSnapshot(t, buf.Bytes()), "\n") + "\n"
			if *update {
				if wantIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "want"})
					wantIdx = len(ar.Files) - 1
				}
				ar.Files[wantIdx].Data = []byte(got)
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("snapshot entries:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestPackDeterministic(t *testing.T) {
	files := map[string]string{"b.txt": "b", "a/z.py": "z", "a/y.py": "y", "run.sh": "#!/bin/sh\n"}
	d1, d2 := writeTree(t, files), writeTree(t, files)
	// Different mtimes and permissions that do not matter.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(d2, "b.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d2, "a/z.py"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{d1, d2} {
		if err := os.Chmod(filepath.Join(d, "run.sh"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(dir string) [32]byte {
		var buf bytes.Buffer
		st, err := Pack(context.Background(), dir, &buf, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 4 || st.Dirs != 1 || st.Bytes != 13 {
			t.Errorf("stats = %+v, want 4 files, 1 dir, 13 bytes", st)
		}
		return sha256.Sum256(buf.Bytes())
	}
	if sum(d1) != sum(d2) {
		t.Fatal("the same tree gave different snapshots")
	}
	// Executable bit survives the round trip.
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), d1, &buf, Limits{}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := Extract(context.Background(), &buf, out, Limits{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(out, "run.sh"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("run.sh after extract: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a/y.py")); err != nil || string(b) != "y" {
		t.Fatalf("a/y.py after extract: %q, %v", b, err)
	}
}

func TestPackSymlinksNotFollowed(t *testing.T) {
	outside := writeTree(t, map[string]string{"secret/big.bin": "outside content"})
	dir := writeTree(t, map[string]string{"main.py": "x"})
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("main.py", filepath.Join(dir, "link.py")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st, err := Pack(context.Background(), dir, &buf, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(listSnapshot(t, buf.Bytes()), "|")
	want := "data -> " + filepath.Join(outside, "secret") + "|link.py -> main.py|main.py"
	if got != want {
		t.Fatalf("entries %q, want %q", got, want)
	}
	if st.Bytes != 1 {
		t.Errorf("bytes = %d: the symlinked directory was followed", st.Bytes)
	}
	out := t.TempDir()
	if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), out, Limits{}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(out, "link.py")); err != nil || l != "main.py" {
		t.Errorf("link.py = %q, %v", l, err)
	}
}

// tarGz builds a tar.gz from headers (files get the content "x").
func tarGz(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		hdrs    []*tar.Header
		wantErr string
	}{
		{"dotdot", []*tar.Header{{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}}, "not a clean relative path"},
		{"absolute", []*tar.Header{{Name: "/tmp/evil", Typeflag: tar.TypeReg, Mode: 0o644}}, "not a clean relative path"},
		{"unclean", []*tar.Header{{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}}, "not a clean relative path"},
		{"through symlink", []*tar.Header{
			{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/tmp"},
			{Name: "l/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		}, `parent "l" is a symlink`},
		{"device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, "unsupported type"},
		{"too many files", []*tar.Header{
			{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, {Name: "b", Typeflag: tar.TypeReg, Mode: 0o644},
		}, "more than 1 files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			err := Extract(context.Background(), bytes.NewReader(tarGz(t, tc.hdrs...)), out, Limits{MaxFiles: 1})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Extract err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestScanStopsCountingFarOverTheLimit(t *testing.T) {
	files := map[string]string{}
	for i := range 30 {
		files[fmt.Sprintf("junk/f%02d", i)] = ""
	}
	dir := writeTree(t, files)
	entries, capped, err := scan(context.Background(), dir, 10, nil)
	if err != nil || !capped {
		t.Fatalf("scan = capped %v, %v; want capped", capped, err)
	}
	if n := len(entries); n != 12 { // junk/ and 11 files
		t.Errorf("scan kept %d entries, want 12", n)
	}
	_, err = checkLimits(entries, capped, Limits{MaxFiles: 3})
	if want := "more than 10 files (counting stopped there) exceed the limit of 3 files; biggest by file count: junk/ (11 files, 0 B)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
	if _, capped, _ := scan(context.Background(), dir, 0, nil); capped {
		t.Error("scan with no cap stopped early")
	}
}

// TestPackAgreesWithGit checks the ignore rules against git itself: for
// every golden tree, with its .atelierignore files and nested .git left
// out, the files Pack keeps are exactly those `git ls-files --others
// --exclude-standard` lists.
func TestPackAgreesWithGit(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to cross-check the ignore rules: %v", err)
	}
	files, _ := filepath.Glob("testdata/pack/*.txtar")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for _, f := range ar.Files {
				rel, ok := strings.CutPrefix(f.Name, "tree/")
				if !ok || path.Base(rel) == AtelierIgnoreFile || path.Base(rel) == ".git" || strings.HasPrefix(rel, ".git/") {
					continue
				}
				p := filepath.Join(dir, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			git := exec.Command(gitBin, "init", "-q", ".")
			git.Dir = dir
			git.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
			if out, err := git.CombinedOutput(); err != nil {
				t.Fatalf("git init: %v\n%s", err, out)
			}
			ls := exec.Command(gitBin, "-c", "core.quotePath=false", "ls-files", "--others", "--exclude-standard")
			ls.Dir = dir
			ls.Env = git.Env
			out, err := ls.Output()
			if err != nil {
				t.Fatalf("git ls-files: %v", err)
			}
			want := strings.Fields(string(out))
			sort.Strings(want)
			if len(want) < 3 {
				t.Fatalf("git lists only %q: the tree was not built", want)
			}

			var buf bytes.Buffer
			if _, err := Pack(context.Background(), dir, &buf, Limits{}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range listSnapshot(t, buf.Bytes()) {
				if !strings.HasSuffix(n, "/") {
					got = append(got, n)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("Pack keeps:\n%s\ngit keeps:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
