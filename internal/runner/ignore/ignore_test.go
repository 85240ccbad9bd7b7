package ignore

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	type probe struct {
		path  string
		dir   bool
		match bool
	}
	tests := []struct {
		name    string
		base    string
		pattern string
		probes  []probe
	}{
		{"basename any depth", "", "*.log", []probe{
			{"a.log", false, true}, {"x/y/a.log", false, true}, {"a.logx", false, false}, {"log", false, false},
			{"dir.log", true, true},
		}},
		{"plain name any depth", "", "build", []probe{
			{"build", true, true}, {"a/build", true, true}, {"a/build", false, true}, {"builds", true, false},
		}},
		{"dir only", "", "build/", []probe{
			{"build", true, true}, {"build", false, false}, {"src/build", true, true}, {"src/build", false, false},
		}},
		{"leading slash anchors", "", "/todo", []probe{
			{"todo", false, true}, {"a/todo", false, false},
		}},
		{"middle slash anchors", "", "doc/frotz", []probe{
			{"doc/frotz", false, true}, {"a/doc/frotz", false, false},
		}},
		{"star does not cross slash", "", "doc/*.txt", []probe{
			{"doc/a.txt", false, true}, {"doc/x/a.txt", false, false},
		}},
		{"question mark", "", "?.py", []probe{
			{"a.py", false, true}, {"ab.py", false, false}, {".py", false, false}, {"é.py", false, true},
		}},
		{"class and range", "", "file[0-9a].txt", []probe{
			{"file3.txt", false, true}, {"filea.txt", false, true}, {"fileb.txt", false, false},
		}},
		{"negated class", "", "x[!0-9]", []probe{
			{"xa", false, true}, {"x1", false, false},
		}},
		{"caret negated class", "", "x[^ab]", []probe{
			{"xc", false, true}, {"xa", false, false},
		}},
		{"bracket first in class", "", "x[]a]", []probe{
			{"x]", false, true}, {"xa", false, true}, {"xb", false, false},
		}},
		{"posix class", "", "v[[:digit:]]", []probe{
			{"v1", false, true}, {"vx", false, false},
		}},
		{"leading double star", "", "**/foo", []probe{
			{"foo", false, true}, {"a/foo", false, true}, {"a/b/foo", true, true}, {"a/foox", false, false},
		}},
		{"leading double star with dir", "", "**/foo/bar", []probe{
			{"foo/bar", false, true}, {"x/y/foo/bar", false, true}, {"foo/x/bar", false, false},
		}},
		{"trailing double star", "", "abc/**", []probe{
			{"abc", true, false}, {"abc/x", false, true}, {"abc/x/y", false, true}, {"x/abc/y", false, false},
		}},
		{"middle double star", "", "a/**/b", []probe{
			{"a/b", false, true}, {"a/x/b", false, true}, {"a/x/y/b", false, true}, {"a/x/y/c", false, false}, {"b", false, false},
		}},
		{"more stars than two are a double star", "", "***/d", []probe{
			{"d", false, true}, {"x/y/d", false, true}, {"xd", false, false},
		}},
		{"empty segment matches nothing", "", "a//b", []probe{{"a/b", false, false}, {"a//b", false, false}}},
		{"leading double slash matches nothing", "", "//**", []probe{{"a", false, false}}},
		{"only one trailing slash is dir-only", "", "**//", []probe{{"a", true, false}}},
		{"other double stars are stars", "", "a**z", []probe{
			{"abcz", false, true}, {"x/abz", false, true}, {"ab/cz", false, false},
		}},
		{"escaped hash", "", `\#notes`, []probe{{"#notes", false, true}}},
		{"escaped bang", "", `\!keep`, []probe{{"!keep", false, true}}},
		{"escaped star", "", `a\*`, []probe{{"a*", false, true}, {"ab", false, false}}},
		{"trailing spaces dropped", "", "foo   ", []probe{{"foo", false, true}, {"foo ", false, false}}},
		{"escaped trailing space kept", "", `foo\ `, []probe{{"foo ", false, true}, {"foo", false, false}}},
		{"nested base unanchored", "sub", "*.tmp", []probe{
			{"sub/a.tmp", false, true}, {"sub/x/a.tmp", false, true}, {"a.tmp", false, false}, {"subx/a.tmp", false, false},
		}},
		{"nested base anchored", "sub", "/gen", []probe{
			{"sub/gen", true, true}, {"sub/x/gen", true, false}, {"gen", true, false},
		}},
		{"unterminated class matches nothing", "", "a[bc", []probe{{"a[bc", false, false}, {"ab", false, false}}},
		{"unknown posix class matches nothing", "", "[[:nope:]]", []probe{{"a", false, false}}},
		{"trailing backslash matches nothing", "", `a\`, []probe{{`a\`, false, false}, {"a", false, false}}},
		{"crlf", "", "x.bin\r", []probe{{"x.bin", false, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := ParsePattern(tc.base, tc.pattern)
			if !ok {
				t.Fatalf("ParsePattern(%q) skipped the line", tc.pattern)
			}
			for _, pr := range tc.probes {
				if got := p.Match(pr.path, pr.dir); got != pr.match {
					t.Errorf("pattern %q (base %q) Match(%q, dir=%v) = %v, want %v", tc.pattern, tc.base, pr.path, pr.dir, got, pr.match)
				}
			}
		})
	}
}

func TestParseSkipsCommentsAndBlanks(t *testing.T) {
	pats := Parse("", []byte("# comment\n\n   \n*.o\n!keep.o\n/\n!\n"))
	var got []string
	for _, p := range pats {
		got = append(got, p.String())
	}
	if want := "*.o|!keep.o"; strings.Join(got, "|") != want {
		t.Fatalf("patterns = %q, want %q", strings.Join(got, "|"), want)
	}
	if !pats[1].Negate() || pats[0].Negate() {
		t.Fatalf("negation flags wrong: %v %v", pats[0].Negate(), pats[1].Negate())
	}
}

func TestParseLongLineKeepsTheRest(t *testing.T) {
	pats := Parse("", []byte(strings.Repeat("x", 2<<20)+"\n*.o\n"))
	if len(pats) != 2 || pats[1].String() != "*.o" {
		t.Fatalf("got %d patterns; a very long line must not end the file", len(pats))
	}
}

func TestMatcherPrecedence(t *testing.T) {
	var m Matcher
	m.Add("", []byte("*.log\n!important.log\nout/\n"))
	m.Add("sub", []byte("!*.log\nimportant.log\n"))
	tests := []struct {
		path    string
		dir     bool
		ignored bool
	}{
		{"a.log", false, true},
		{"important.log", false, false},    // negated later in the same file
		{"x/important.log", false, false},  // unanchored negation applies at depth
		{"sub/a.log", false, false},        // deeper file re-includes
		{"sub/important.log", false, true}, // and re-excludes
		{"out", true, true},
		{"out", false, false},
		{"main.go", false, false},
	}
	for _, tc := range tests {
		if got, p := m.Ignored(tc.path, tc.dir); got != tc.ignored {
			t.Errorf("Ignored(%q, dir=%v) = %v (pattern %q in %q), want %v", tc.path, tc.dir, got, p.String(), p.Base(), tc.ignored)
		}
	}
}

func TestManyDoubleStarsStayFast(t *testing.T) {
	p, _ := ParsePattern("", strings.Repeat("**/a/", 30)+"b")
	path := strings.Repeat("a/", 200) + "c"
	if p.Match(path, false) {
		t.Fatal("matched a path that does not end in b")
	}
	if !p.Match(strings.Repeat("a/", 40)+"b", false) {
		t.Fatal("did not match 40 a's then b")
	}
}

func FuzzIgnoreMatch(f *testing.F) {
	for _, s := range []string{"*.log", "!/a/**/b/", `\#x`, "[a-", "[[:alpha:]]x", "**", "a/**", `\`, "[!]]", "**/**/x"} {
		f.Add(s, "a/b/c.log", false)
	}
	f.Fuzz(func(t *testing.T, pattern, path string, isDir bool) {
		p, ok := ParsePattern("", pattern)
		if !ok {
			return
		}
		p.Match(path, isDir)
		var m Matcher
		m.Add("x", []byte(pattern))
		m.Ignored("x/"+path, isDir)
	})
}

func BenchmarkMatcher(b *testing.B) {
	var m Matcher
	m.Add("", []byte("*.pyc\n__pycache__/\n/build/\ndata/**\n!data/keep/**\n*.log\n.venv/\nnode_modules/\n**/checkpoints/*.pt\n"))
	m.Add("src", []byte("generated/\n*.tmp\n"))
	paths := []string{"src/model/layers/attention.py", "data/keep/a.csv", "src/x/checkpoints/e1.pt", "README.md"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Ignored(paths[i%len(paths)], false)
	}
}
