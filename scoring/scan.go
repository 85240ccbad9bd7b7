package scoring

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// scanner is a small strict JSON reader over a byte slice. It exists so the
// hot path (the tensor data arrays) is decoded without reflection and
// without an intermediate []any. Errors name the byte offset.
type scanner struct {
	b []byte
	i int
}

// maxDepth bounds nesting of arrays and objects.
const maxDepth = 64

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: json at offset %d: %s", ErrInvalidInput, s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, or 0 at EOF.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.i >= len(s.b) {
			return s.errorf("unexpected end of input, want %q", c)
		}
		return s.errorf("unexpected %q, want %q", s.b[s.i], c)
	}
	s.i++
	return nil
}

// end checks that only white space is left.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return s.errorf("unexpected %q after the top-level value", s.b[s.i])
	}
	return nil
}

// str reads a JSON string.
func (s *scanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start := s.i
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if !escaped && utf8.Valid(raw) {
				return string(raw), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start-1:s.i], &out); err != nil {
				s.i = start
				return "", s.errorf("bad string: %v", err)
			}
			return out, nil
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return "", s.errorf("control character in string")
		default:
			s.i++
		}
	}
	return "", s.errorf("unterminated string")
}

// literal consumes word (true, false, null).
func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// number returns the raw token of a JSON number, checked against the JSON
// grammar.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	intStart := s.i
	if digits() == 0 {
		s.i = start
		if s.i >= len(s.b) {
			return nil, s.errorf("unexpected end of input, want a number")
		}
		return nil, s.errorf("unexpected %q, want a number", s.b[s.i])
	}
	if s.b[intStart] == '0' && s.i-intStart > 1 {
		return nil, s.errorf("number with a leading zero")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, s.errorf("number without digits after '.'")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, s.errorf("number without digits in the exponent")
		}
	}
	return s.b[start:s.i], nil
}

// skip reads and discards any JSON value.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	switch c := s.peek(); c {
	case '"':
		_, err := s.str()
		return err
	case '{':
		return s.object(func(string) error { return s.skip(depth + 1) })
	case '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case 't', 'f', 'n':
		if s.literal("true") || s.literal("false") || s.literal("null") {
			return nil
		}
		return s.errorf("unexpected %q", c)
	default:
		_, err := s.number()
		return err
	}
}

// object reads {"k": v, ...}, calling fn with s positioned at each value.
func (s *scanner) object(fn func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("want ',' or '}' in object")
		}
	}
}

// array reads [v, ...], calling fn with s positioned at each element.
func (s *scanner) array(fn func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("want ',' or ']' in array")
		}
	}
}

func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Element parsers. Floats also accept the strings "NaN", "Infinity",
// "-Infinity" (JSON has no literal for them; the encoder writes them so).

func (s *scanner) float(bits int) (float64, error) {
	if s.peek() == '"' {
		at := s.i
		v, err := s.str()
		if err != nil {
			return 0, err
		}
		switch v {
		case "NaN":
			return math.NaN(), nil
		case "Infinity", "Inf", "+Infinity", "+Inf":
			return math.Inf(1), nil
		case "-Infinity", "-Inf":
			return math.Inf(-1), nil
		}
		s.i = at
		return 0, s.errorf("string %q where a number is expected", v)
	}
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(bstr(tok), bits)
	if err != nil {
		// Out of range: ParseFloat returns ±Inf; refuse it rather than guess.
		return 0, s.errorf("number %s out of range for FP%d", tok, bits)
	}
	return f, nil
}

func (s *scanner) int(bits int) (int64, error) {
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(bstr(tok), 10, bits)
	if err != nil {
		return 0, s.errorf("%s is not an INT%d", tok, bits)
	}
	return v, nil
}

func (s *scanner) uint(bits int) (uint64, error) {
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(bstr(tok), 10, bits)
	if err != nil {
		return 0, s.errorf("%s is not a UINT%d", tok, bits)
	}
	return v, nil
}

func (s *scanner) bool() (bool, error) {
	s.ws()
	if s.literal("true") {
		return true, nil
	}
	if s.literal("false") {
		return false, nil
	}
	if s.i < len(s.b) {
		return false, s.errorf("unexpected %q, want true or false", s.b[s.i])
	}
	return false, s.errorf("unexpected end of input, want true or false")
}

// dataScanner reads a flat or nested array of elements of one type and
// records the nesting as dims. Nested arrays must be rectangular.
type dataScanner[T any] struct {
	s         *scanner
	elem      func(*scanner) (T, error)
	out       []T
	dims      []int64
	leafDepth int
}

func scanData[T any](s *scanner, elem func(*scanner) (T, error), capHint int) ([]T, []int64, error) {
	d := dataScanner[T]{s: s, elem: elem, leafDepth: -1}
	if capHint > 0 && capHint < 1<<20 {
		d.out = make([]T, 0, capHint)
	}
	if s.peek() != '[' {
		// A bare scalar.
		v, err := elem(s)
		if err != nil {
			return nil, nil, err
		}
		return []T{v}, []int64{}, nil
	}
	if err := d.level(0); err != nil {
		return nil, nil, err
	}
	if d.out == nil {
		d.out = []T{}
	}
	return d.out, d.dims, nil
}

func (d *dataScanner[T]) level(depth int) error {
	if depth >= maxDepth {
		return d.s.errorf("data nested deeper than %d", maxDepth)
	}
	if depth == len(d.dims) {
		d.dims = append(d.dims, -1)
	}
	n := int64(0)
	err := d.s.array(func() error {
		n++
		if d.s.peek() == '[' {
			if d.leafDepth >= 0 && d.leafDepth <= depth {
				return d.s.errorf("data is not rectangular: array where a number is expected at depth %d", depth+1)
			}
			return d.level(depth + 1)
		}
		if len(d.dims) > depth+1 {
			return d.s.errorf("data is not rectangular: number where an array is expected at depth %d", depth+1)
		}
		if d.leafDepth < 0 {
			d.leafDepth = depth + 1
		} else if d.leafDepth != depth+1 {
			return d.s.errorf("data is not rectangular: number at depth %d, want depth %d", depth+1, d.leafDepth)
		}
		v, err := d.elem(d.s)
		if err != nil {
			return err
		}
		d.out = append(d.out, v)
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case d.dims[depth] < 0:
		d.dims[depth] = n
	case d.dims[depth] != n:
		return d.s.errorf("data is not rectangular: %d elements at depth %d, earlier arrays had %d", n, depth+1, d.dims[depth])
	}
	return nil
}

func elemF32(s *scanner) (float32, error) { f, err := s.float(32); return float32(f), err }
func elemF64(s *scanner) (float64, error) { return s.float(64) }
func elemI8(s *scanner) (int8, error)     { v, err := s.int(8); return int8(v), err }
func elemI16(s *scanner) (int16, error)   { v, err := s.int(16); return int16(v), err }
func elemI32(s *scanner) (int32, error)   { v, err := s.int(32); return int32(v), err }
func elemI64(s *scanner) (int64, error)   { return s.int(64) }
func elemU8(s *scanner) (uint8, error)    { v, err := s.uint(8); return uint8(v), err }
func elemU16(s *scanner) (uint16, error)  { v, err := s.uint(16); return uint16(v), err }
func elemU32(s *scanner) (uint32, error)  { v, err := s.uint(32); return uint32(v), err }
func elemU64(s *scanner) (uint64, error)  { return s.uint(64) }
func elemBool(s *scanner) (bool, error)   { return s.bool() }

// scanTensorData reads a data value of element type t: a flat or nested
// array, or a bare scalar. It returns the elements and the nesting.
func scanTensorData(s *scanner, t DataType, capHint int) (any, []int64, error) {
	switch t {
	case Float32:
		return wrap(scanData(s, elemF32, capHint))
	case Float64:
		return wrap(scanData(s, elemF64, capHint))
	case Int8:
		return wrap(scanData(s, elemI8, capHint))
	case Int16:
		return wrap(scanData(s, elemI16, capHint))
	case Int32:
		return wrap(scanData(s, elemI32, capHint))
	case Int64:
		return wrap(scanData(s, elemI64, capHint))
	case Uint8:
		return wrap(scanData(s, elemU8, capHint))
	case Uint16:
		return wrap(scanData(s, elemU16, capHint))
	case Uint32:
		return wrap(scanData(s, elemU32, capHint))
	case Uint64:
		return wrap(scanData(s, elemU64, capHint))
	case Bool:
		return wrap(scanData(s, elemBool, capHint))
	}
	return nil, nil, fmt.Errorf("%w: datatype %s", ErrUnsupported, t)
}

func wrap[T any](v []T, dims []int64, err error) (any, []int64, error) {
	if err != nil {
		return nil, nil, err
	}
	return v, dims, nil
}
