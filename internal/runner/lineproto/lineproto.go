package lineproto

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
)

// Kind is the kind of a directive.
type Kind string

// Directive kinds.
const (
	Metric Kind = "metric"
	Param  Kind = "param"
	Tag    Kind = "tag"
)

// Prefix starts every directive line.
const Prefix = "::"

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed directive")

// Directive is one parsed protocol line.
type Directive struct {
	Kind  Kind
	Name  string
	Value string  // the raw value (param, tag and metric)
	Num   float64 // metric value
	Step  int64   // metric step, valid when HasStep
	// HasStep reports whether the metric line gave a step.
	HasStep bool
}

// IsDirective reports whether line is meant as a directive (starts with
// "::"), well-formed or not.
func IsDirective(line string) bool { return strings.HasPrefix(line, Prefix) }

// Parse parses one line. ok is false (and err nil) for a line that is not a
// directive. For a malformed directive err wraps ErrMalformed and says what
// is wrong and where (a 1-based column).
func Parse(line string) (d Directive, ok bool, err error) {
	if !IsDirective(line) {
		return Directive{}, false, nil
	}
	line = strings.TrimSuffix(line, "\r")
	s := &scanner{src: line, pos: len(Prefix)}
	kind := s.word()
	switch Kind(kind) {
	case Metric, Param, Tag:
	case "":
		return Directive{}, true, s.errorf("missing directive kind after %q (want metric, param or tag)", Prefix)
	default:
		return Directive{}, true, s.errorAt(len(Prefix), "unknown directive %q (want metric, param or tag)", kind)
	}
	d.Kind = Kind(kind)
	if !s.atEnd() && !s.atSpace() {
		return Directive{}, true, s.errorf("want a space after %q", kind)
	}
	seen := map[string]bool{}
	var rawStep string
	for {
		s.skipSpace()
		if s.atEnd() {
			break
		}
		start := s.pos
		key := s.key()
		if key == "" {
			return Directive{}, true, s.errorf("want a field key (name, value or step)")
		}
		if s.atEnd() || s.src[s.pos] != '=' {
			return Directive{}, true, s.errorf("want '=' after field %q", key)
		}
		s.pos++
		val, err := s.value()
		if err != nil {
			return Directive{}, true, err
		}
		if !s.atEnd() && !s.atSpace() {
			return Directive{}, true, s.errorf("want a space after the value of %q", key)
		}
		if seen[key] {
			return Directive{}, true, s.errorAt(start, "field %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "name":
			d.Name = val
		case "value":
			d.Value = val
		case "step":
			if d.Kind != Metric {
				return Directive{}, true, s.errorAt(start, "field \"step\" is only allowed on metric")
			}
			rawStep = val
		default:
			return Directive{}, true, s.errorAt(start, "unknown field %q (want name, value or step)", key)
		}
	}
	if !seen["name"] {
		return Directive{}, true, s.errorf("%s: missing name=", d.Kind)
	}
	if !seen["value"] {
		return Directive{}, true, s.errorf("%s: missing value=", d.Kind)
	}
	if err := hub.CheckKey(string(d.Kind), d.Name); err != nil {
		return Directive{}, true, fmt.Errorf("%s: %w", err.Error(), ErrMalformed)
	}
	switch d.Kind {
	case Metric:
		f, err := strconv.ParseFloat(d.Value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return Directive{}, true, fmt.Errorf("metric %q: value %q is not a finite number: %w", d.Name, d.Value, ErrMalformed)
		}
		d.Num = f
		if seen["step"] {
			st, err := strconv.ParseInt(rawStep, 10, 64)
			if err != nil || st < 0 {
				return Directive{}, true, fmt.Errorf("metric %q: step %q is not a non-negative integer: %w", d.Name, rawStep, ErrMalformed)
			}
			d.Step, d.HasStep = st, true
		}
	default:
		if err := hub.CheckValue(string(d.Kind), d.Name, d.Value); err != nil {
			return Directive{}, true, fmt.Errorf("%s: %w", err.Error(), ErrMalformed)
		}
	}
	return d, true, nil
}

type scanner struct {
	src string
	pos int
}

func (s *scanner) atEnd() bool   { return s.pos >= len(s.src) }
func (s *scanner) atSpace() bool { return s.src[s.pos] == ' ' || s.src[s.pos] == '\t' }

func (s *scanner) skipSpace() {
	for !s.atEnd() && s.atSpace() {
		s.pos++
	}
}

func (s *scanner) errorf(format string, args ...any) error {
	return s.errorAt(s.pos, format, args...)
}

func (s *scanner) errorAt(pos int, format string, args ...any) error {
	return fmt.Errorf("column %d: %s: %w", pos+1, fmt.Sprintf(format, args...), ErrMalformed)
}

// word reads [a-z]+.
func (s *scanner) word() string {
	start := s.pos
	for !s.atEnd() && s.src[s.pos] >= 'a' && s.src[s.pos] <= 'z' {
		s.pos++
	}
	return s.src[start:s.pos]
}

// key reads the characters up to '=', space or the end.
func (s *scanner) key() string {
	start := s.pos
	for !s.atEnd() && !s.atSpace() && s.src[s.pos] != '=' {
		s.pos++
	}
	return s.src[start:s.pos]
}

func (s *scanner) value() (string, error) {
	if s.atEnd() || s.atSpace() {
		return "", s.errorf("empty value (write \"\" for an empty string)")
	}
	if s.src[s.pos] != '"' {
		start := s.pos
		for !s.atEnd() && !s.atSpace() {
			if s.src[s.pos] == '"' {
				return "", s.errorf("unexpected '\"' inside an unquoted value")
			}
			s.pos++
		}
		return s.src[start:s.pos], nil
	}
	open := s.pos
	s.pos++
	var b strings.Builder
	for !s.atEnd() {
		c := s.src[s.pos]
		switch c {
		case '"':
			s.pos++
			return b.String(), nil
		case '\\':
			if s.pos+1 >= len(s.src) {
				return "", s.errorf("unterminated escape")
			}
			switch e := s.src[s.pos+1]; e {
			case '"', '\\':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return "", s.errorf("unknown escape \\%c (want \\\", \\\\, \\n or \\t)", e)
			}
			s.pos += 2
		default:
			b.WriteByte(c)
			s.pos++
		}
	}
	return "", s.errorAt(open, "unterminated quoted value")
}
