package ignore

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxPatternLen bounds the patterns compiled; a longer one matches nothing.
const maxPatternLen = 64 << 10

// Pattern is one compiled line of an ignore file. The zero Pattern matches
// nothing. Patterns are immutable and safe for concurrent use.
type Pattern struct {
	base    string // directory of the ignore file, slash-separated, "" for the root
	text    string // the source line, for messages
	negate  bool
	dirOnly bool
	invalid bool
	segs    []segment
}

// segment is one '/'-separated part of a pattern: either "**" (any number
// of path segments) or a glob over a single path segment.
type segment struct {
	doubleStar bool
	toks       []token
}

type tokKind uint8

const (
	tokLit tokKind = iota
	tokAny
	tokStar
	tokClass
)

type token struct {
	kind   tokKind
	r      rune        // tokLit
	negate bool        // tokClass
	ranges []runeRange // tokClass
	named  []func(rune) bool
}

type runeRange struct{ lo, hi rune }

// Parse compiles the lines of an ignore file found in directory base
// (slash-separated, relative to the root of the tree, "" for the root).
// Lines that hold no pattern (blank, comments) are skipped.
func Parse(base string, data []byte) []Pattern {
	var pats []Pattern
	for line := range strings.SplitSeq(string(data), "\n") {
		if p, ok := ParsePattern(base, line); ok {
			pats = append(pats, p)
		}
	}
	return pats
}

// ParsePattern compiles one line of an ignore file found in directory base.
// ok is false when the line holds no pattern (blank or comment).
func ParsePattern(base, line string) (p Pattern, ok bool) {
	line = strings.TrimSuffix(line, "\r")
	if line == "" || line[0] == '#' {
		return Pattern{}, false
	}
	line = trimTrailingSpaces(line)
	p = Pattern{base: strings.Trim(base, "/"), text: line}
	if strings.HasPrefix(line, "!") {
		p.negate = true
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") && !escapedAt(line, len(line)-1) {
		p.dirOnly = true
		line = line[:len(line)-1] // one slash only, as git
	}
	if line == "" {
		return Pattern{}, false
	}
	if len(line) > maxPatternLen {
		p.invalid = true // longer than any path it could match
		return p, true
	}
	anchored := strings.Contains(line, "/")
	line = strings.TrimPrefix(line, "/")
	parts := strings.Split(line, "/")
	if !anchored {
		p.segs = append(p.segs, segment{doubleStar: true})
	}
	for _, part := range parts {
		if part == "" {
			// "a//b", "//a", "a//": no path has an empty component,
			// so git never matches these.
			p.invalid = true
			continue
		}
		if len(part) >= 2 && strings.Trim(part, "*") == "" { // "**", "***", ...
			if n := len(p.segs); n > 0 && p.segs[n-1].doubleStar {
				continue // "**/**" is "**"
			}
			p.segs = append(p.segs, segment{doubleStar: true})
			continue
		}
		toks, valid := compileGlob(part)
		if !valid {
			p.invalid = true
		}
		p.segs = append(p.segs, segment{toks: toks})
	}
	if len(p.segs) == 0 {
		return Pattern{}, false
	}
	return p, true
}

// escapedAt reports whether the byte at i is preceded by an odd number of
// backslashes.
func escapedAt(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// trimTrailingSpaces drops trailing spaces that are not escaped with '\'.
func trimTrailingSpaces(s string) string {
	end := len(s)
	for end > 0 && s[end-1] == ' ' && !escapedAt(s, end-1) {
		end--
	}
	return s[:end]
}

// String returns the source line of the pattern.
func (p Pattern) String() string { return p.text }

// Negate reports whether the pattern re-includes what it matches ("!...").
func (p Pattern) Negate() bool { return p.negate }

// Base returns the directory of the ignore file the pattern came from.
func (p Pattern) Base() string { return p.base }

// Match reports whether the pattern matches path, a slash-separated path
// relative to the root of the tree, which is a directory if isDir. It does
// not look at Negate. Paths outside the pattern's base never match. Match
// costs O(len(pattern) × len(path)) at worst.
func (p Pattern) Match(path string, isDir bool) bool {
	if p.invalid || len(p.segs) == 0 || (p.dirOnly && !isDir) {
		return false
	}
	path = strings.Trim(path, "/")
	if p.base != "" {
		rest, ok := strings.CutPrefix(path, p.base)
		if !ok || !strings.HasPrefix(rest, "/") {
			return false
		}
		path = rest[1:]
	}
	if path == "" {
		return false
	}
	parts := strings.Split(path, "/")
	// seen[si*(n+1)+pi] memoizes failed (segment, part) positions so that
	// patterns with several "**" stay polynomial.
	n := len(parts)
	seen := make([]bool, (len(p.segs)+1)*(n+1))
	var match func(si, pi int) bool
	match = func(si, pi int) bool {
		if si == len(p.segs) {
			return pi == n
		}
		k := si*(n+1) + pi
		if seen[k] {
			return false
		}
		seen[k] = true
		s := p.segs[si]
		if s.doubleStar {
			if si == len(p.segs)-1 {
				// A trailing "/**" matches everything inside, not the
				// directory itself.
				return pi < n
			}
			for j := pi; j <= n; j++ {
				if match(si+1, j) {
					return true
				}
			}
			return false
		}
		return pi < n && globMatch(s.toks, parts[pi]) && match(si+1, pi+1)
	}
	return match(0, 0)
}

// compileGlob turns one path segment of a pattern into tokens. valid is
// false for a malformed glob, which then matches nothing.
func compileGlob(s string) (toks []token, valid bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case '\\':
			if i+1 >= len(s) {
				return toks, false // trailing lone backslash
			}
			r2, size2 := utf8.DecodeRuneInString(s[i+1:])
			toks = append(toks, token{kind: tokLit, r: r2})
			i += 1 + size2
		case '*':
			if n := len(toks); n == 0 || toks[n-1].kind != tokStar {
				toks = append(toks, token{kind: tokStar})
			}
			i += size
		case '?':
			toks = append(toks, token{kind: tokAny})
			i += size
		case '[':
			t, n, ok := compileClass(s[i+1:])
			if !ok {
				return toks, false
			}
			toks = append(toks, t)
			i += 1 + n
		default:
			toks = append(toks, token{kind: tokLit, r: r})
			i += size
		}
	}
	return toks, true
}

var posixClasses = map[string]func(rune) bool{
	"alnum":  func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) },
	"alpha":  unicode.IsLetter,
	"blank":  func(r rune) bool { return r == ' ' || r == '\t' },
	"cntrl":  unicode.IsControl,
	"digit":  unicode.IsDigit,
	"graph":  func(r rune) bool { return unicode.IsGraphic(r) && !unicode.IsSpace(r) },
	"lower":  unicode.IsLower,
	"print":  unicode.IsPrint,
	"punct":  unicode.IsPunct,
	"space":  unicode.IsSpace,
	"upper":  unicode.IsUpper,
	"xdigit": func(r rune) bool { return strings.ContainsRune("0123456789abcdefABCDEF", r) },
}

// compileClass compiles the body of a bracket expression; s starts just
// after '['. It returns the token and how many bytes of s it consumed
// (including the closing ']').
func compileClass(s string) (token, int, bool) {
	t := token{kind: tokClass}
	i := 0
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		t.negate = true
		i++
	}
	first := true
	for i < len(s) {
		c := s[i]
		if c == ']' && !first {
			return t, i + 1, true
		}
		first = false
		if c == '[' && i+1 < len(s) && s[i+1] == ':' {
			end := strings.Index(s[i+2:], ":]")
			if end < 0 {
				return t, 0, false
			}
			fn, ok := posixClasses[s[i+2:i+2+end]]
			if !ok {
				return t, 0, false
			}
			t.named = append(t.named, fn)
			i += 2 + end + 2
			continue
		}
		lo, n, ok := classRune(s[i:])
		if !ok {
			return t, 0, false
		}
		i += n
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			h, n2, ok := classRune(s[i+1:])
			if !ok {
				return t, 0, false
			}
			hi = h
			i += 1 + n2
		}
		t.ranges = append(t.ranges, runeRange{lo, hi})
	}
	return t, 0, false // no closing ']'
}

// classRune reads one possibly escaped character of a bracket expression.
func classRune(s string) (rune, int, bool) {
	if s[0] == '\\' {
		if len(s) < 2 {
			return 0, 0, false
		}
		r, n := utf8.DecodeRuneInString(s[1:])
		return r, 1 + n, true
	}
	r, n := utf8.DecodeRuneInString(s)
	return r, n, true
}

func (t *token) matches(r rune) bool {
	switch t.kind {
	case tokLit:
		return r == t.r
	case tokAny:
		return r != '/'
	case tokClass:
		in := false
		for _, rg := range t.ranges {
			if rg.lo <= r && r <= rg.hi {
				in = true
				break
			}
		}
		for _, fn := range t.named {
			if !in && fn(r) {
				in = true
			}
		}
		return in != t.negate && r != '/'
	}
	return false
}

// globMatch matches one path segment against tokens, with single-point
// backtracking on '*' (linear in practice, O(len(toks) × len(s)) at worst).
func globMatch(toks []token, s string) bool {
	rs := []rune(s)
	ti, si := 0, 0
	starT, starS := -1, -1
	for si < len(rs) {
		if ti < len(toks) && toks[ti].kind == tokStar {
			starT, starS = ti, si
			ti++
			continue
		}
		if ti < len(toks) && toks[ti].matches(rs[si]) {
			ti++
			si++
			continue
		}
		if starT >= 0 {
			starS++
			ti, si = starT+1, starS
			continue
		}
		return false
	}
	for ti < len(toks) && toks[ti].kind == tokStar {
		ti++
	}
	return ti == len(toks)
}

// Matcher decides whether paths are ignored by the patterns of several
// ignore files. Add the files of a directory before those of its
// subdirectories: patterns added later take precedence, as a deeper
// .gitignore does over a shallower one, and the last matching pattern
// decides. A Matcher is not safe for concurrent Add; Ignored may be called
// concurrently once adding is done.
type Matcher struct {
	pats []Pattern
}

// Add compiles the content of an ignore file found in directory base and
// adds its patterns.
func (m *Matcher) Add(base string, data []byte) {
	m.pats = append(m.pats, Parse(base, data)...)
}

// AddPatterns adds compiled patterns.
func (m *Matcher) AddPatterns(pats ...Pattern) { m.pats = append(m.pats, pats...) }

// Ignored reports whether path (slash-separated, relative to the root; a
// directory if isDir) is excluded, and the deciding pattern (the zero
// Pattern when none matched). It looks only at path itself, not at its
// parents.
func (m *Matcher) Ignored(path string, isDir bool) (bool, Pattern) {
	for i := len(m.pats) - 1; i >= 0; i-- {
		if m.pats[i].Match(path, isDir) {
			return !m.pats[i].negate, m.pats[i]
		}
	}
	return false, Pattern{}
}
