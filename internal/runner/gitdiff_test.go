package runner

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var gitDiffN = flag.Int("gitdiff.n", 40, "random ignore files TestIgnoreAgreesWithGitRandom checks against git")

// TestIgnoreAgreesWithGitRandom writes random .gitignore files (built from
// pattern fragments) over a fixed tree and checks that Pack keeps exactly
// the files git keeps. The seed is fixed; -gitdiff.n=1000 for a longer hunt.
// It leaves out git's literal-prefix "**" quirk, documented in docs/runs.md.
func TestIgnoreAgreesWithGitRandom(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to cross-check the ignore rules: %v", err)
	}
	paths := []string{"a/b/c.txt", "a/c.txt", "c.txt", "b/a/c.log", "a/b/x/y.log", "ab/c.txt", "x.log", "a/xb", "b/b/b", "d[1]/e", "d1/e", "a/.hidden", "abc/a/b"}
	atoms := []string{"a", "b", "c", "*", "?", "**", "/", "[ab]", "[!a]", ".txt", ".log", "x", `\*`, "!", "d[1]", "[[:alpha:]]", "/**", "**/", " ", `\ `}
	quirk := regexp.MustCompile(`[^/*]\*\*`)
	r := rand.New(rand.NewSource(1))
	env := append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	fails := 0
	randomFile := func() string {
		var lines []string
		for n := 1 + r.Intn(3); len(lines) < n; {
			var b strings.Builder
			for range 1 + r.Intn(4) {
				b.WriteString(atoms[r.Intn(len(atoms))])
			}
			l := strings.TrimPrefix(b.String(), "!")
			if strings.Contains(strings.TrimSuffix(l, "/"), "/") && quirk.MatchString(l) {
				continue
			}
			lines = append(lines, b.String())
		}
		return strings.Join(lines, "\n") + "\n"
	}
	for range *gitDiffN {
		// A root file always, one in a/ half of the time.
		ignores := map[string]string{".gitignore": randomFile()}
		if r.Intn(2) == 0 {
			ignores["a/.gitignore"] = randomFile()
		}
		gitignore := fmt.Sprint(ignores)
		dir := t.TempDir()
		for _, p := range paths {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for p, data := range ignores {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		initCmd := exec.Command(gitBin, "init", "-q", ".")
		initCmd.Dir, initCmd.Env = dir, env
		if out, err := initCmd.CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		ls := exec.Command(gitBin, "-c", "core.quotePath=false", "ls-files", "-z", "--others", "--exclude-standard")
		ls.Dir, ls.Env = dir, env
		out, err := ls.Output()
		if err != nil {
			t.Fatalf("git ls-files: %v", err)
		}
		want := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		sort.Strings(want)

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
			t.Errorf("ignore files %q:\nPack keeps %q\ngit keeps  %q", gitignore, got, want)
			if fails++; fails == 5 {
				t.FailNow()
			}
		}
	}
}
