package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/atelier-ml/atelier/hub"
)

var timeZero time.Time

// decodeMetrics decodes {"metrics": [MetricPoint, ...]} without reflection:
// the metrics batch is the hub's hottest path. It is strict (unknown keys
// and wrong types are errors) and its errors name the offset, the index of
// the point and the metric. At most max points are accepted.
func decodeMetrics(b []byte, max int) ([]hub.MetricPoint, error) {
	d := &mdec{b: b}
	d.ws()
	if d.i == len(d.b) {
		return nil, fmt.Errorf("empty request body: expected {\"metrics\": [...]}: %w", hub.ErrInvalid)
	}
	if err := d.expect('{'); err != nil {
		return nil, err
	}
	var points []hub.MetricPoint
	seen := false
	d.ws()
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			keyAt := d.i
			key, err := d.str()
			if err != nil {
				return nil, err
			}
			d.ws()
			if err := d.expect(':'); err != nil {
				return nil, err
			}
			d.ws()
			if key != "metrics" {
				return nil, fmt.Errorf("JSON at offset %d: unknown field %q: expected \"metrics\": %w", keyAt, key, hub.ErrInvalid)
			}
			if seen {
				return nil, fmt.Errorf("JSON at offset %d: duplicate field \"metrics\": %w", keyAt, hub.ErrInvalid)
			}
			seen = true
			if points, err = d.points(max); err != nil {
				return nil, err
			}
			d.ws()
			if d.peek() == ',' {
				d.i++
				continue
			}
			if err := d.expect('}'); err != nil {
				return nil, err
			}
			break
		}
	}
	d.ws()
	if d.i != len(d.b) {
		return nil, d.errf("unexpected data after the object")
	}
	if !seen {
		return nil, fmt.Errorf("missing field \"metrics\": expected {\"metrics\": [...]}: %w", hub.ErrInvalid)
	}
	return points, nil
}

type mdec struct {
	b []byte
	i int
}

func (d *mdec) errf(format string, args ...any) error {
	return fmt.Errorf("malformed JSON at offset %d: %s: %w", d.i, fmt.Sprintf(format, args...), hub.ErrInvalid)
}

func (d *mdec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *mdec) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *mdec) found() string {
	if d.i >= len(d.b) {
		return "end of input"
	}
	return strconv.QuoteRune(rune(d.b[d.i]))
}

func (d *mdec) expect(c byte) error {
	if d.peek() != c {
		return d.errf("expected %q, found %s", c, d.found())
	}
	d.i++
	return nil
}

// str reads a JSON string.
func (d *mdec) str() (string, error) {
	if d.peek() != '"' {
		return "", d.errf("expected a string, found %s", d.found())
	}
	start := d.i
	d.i++
	escaped := false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '\\':
			escaped = true
			d.i += 2
			continue
		case c == '"':
			d.i++
			if !escaped && utf8.Valid(d.b[start+1:d.i-1]) {
				return string(d.b[start+1 : d.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
				d.i = start
				return "", d.errf("invalid string: %v", err)
			}
			return s, nil
		case c < 0x20:
			return "", d.errf("control character in string")
		}
		d.i++
	}
	d.i = start
	return "", d.errf("unterminated string")
}

// token reads a number or literal (true, false, null).
func (d *mdec) token() []byte {
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || c >= 'a' && c <= 'z' {
			d.i++
			continue
		}
		break
	}
	return d.b[start:d.i]
}

// skip skips any JSON value (for error messages about wrong types).
func (d *mdec) kind() string {
	switch c := d.peek(); {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == 0:
		return "end of input"
	}
	return "a number"
}

func (d *mdec) points(max int) ([]hub.MetricPoint, error) {
	if d.peek() == 'n' && string(d.token()) == "null" {
		return nil, nil
	}
	if err := d.expect('['); err != nil {
		return nil, err
	}
	points := make([]hub.MetricPoint, 0, min(max, len(d.b)/32+1))
	d.ws()
	if d.peek() == ']' {
		d.i++
		return points, nil
	}
	for {
		if len(points) == max {
			return nil, fmt.Errorf("more than %d metric points in one request (the limit): %w", max, hub.ErrTooLarge)
		}
		d.ws()
		p, err := d.point(len(points))
		if err != nil {
			return nil, err
		}
		points = append(points, p)
		d.ws()
		if d.peek() == ',' {
			d.i++
			continue
		}
		if err := d.expect(']'); err != nil {
			return nil, err
		}
		return points, nil
	}
}

func (d *mdec) point(idx int) (hub.MetricPoint, error) {
	var p hub.MetricPoint
	if err := d.expect('{'); err != nil {
		return p, fmt.Errorf("metrics[%d]: %w", idx, err)
	}
	var valueErr error
	hasValue := false
	d.ws()
	if d.peek() == '}' {
		d.i++
		return p, fmt.Errorf("metrics[%d]: missing \"name\" and \"value\": %w", idx, hub.ErrInvalid)
	}
	for {
		d.ws()
		keyAt := d.i
		key, err := d.str()
		if err != nil {
			return p, fmt.Errorf("metrics[%d]: %w", idx, err)
		}
		d.ws()
		if err := d.expect(':'); err != nil {
			return p, fmt.Errorf("metrics[%d]: %w", idx, err)
		}
		d.ws()
		at := d.i
		switch key {
		case "name":
			if p.Name, err = d.str(); err != nil {
				return p, fmt.Errorf("metrics[%d]: name: %w", idx, err)
			}
		case "value":
			hasValue = true
			if c := d.peek(); c == '"' || c == '{' || c == '[' || c == 't' || c == 'f' || c == 'n' {
				k := d.kind()
				if c == '"' {
					s, _ := d.str()
					k = "the string " + strconv.Quote(s)
				}
				valueErr = fmt.Errorf("at offset %d: value: expected a finite number, got %s", at, k)
				if c != '"' {
					return p, fmt.Errorf("metrics[%d]: %w: %w", idx, valueErr, hub.ErrInvalid)
				}
				break
			}
			tok := d.token()
			v, err := strconv.ParseFloat(string(tok), 64)
			if !jsonNumber(tok) || err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				valueErr = fmt.Errorf("at offset %d: value %q: expected a finite number", at, tok)
			}
			p.Value = v
		case "step":
			if d.peek() == 'n' && string(d.token()) == "null" {
				break
			}
			tok := d.token()
			if p.Step, err = strconv.ParseInt(string(tok), 10, 64); err != nil || !jsonNumber(tok) {
				return p, fmt.Errorf("metrics[%d]: at offset %d: step %q: expected a whole number: %w", idx, at, tok, hub.ErrInvalid)
			}
		case "timestamp":
			if d.peek() == 'n' && string(d.token()) == "null" {
				break
			}
			s, err := d.str()
			if err != nil {
				return p, fmt.Errorf("metrics[%d]: timestamp: %w", idx, err)
			}
			if p.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return p, fmt.Errorf("metrics[%d]: at offset %d: timestamp %q: expected RFC 3339 time: %w", idx, at, s, hub.ErrInvalid)
			}
		default:
			return p, fmt.Errorf("metrics[%d]: at offset %d: unknown field %q: expected name, value, step or timestamp: %w", idx, keyAt, key, hub.ErrInvalid)
		}
		d.ws()
		if d.peek() == ',' {
			d.i++
			continue
		}
		if err := d.expect('}'); err != nil {
			return p, fmt.Errorf("metrics[%d]: %w", idx, err)
		}
		break
	}
	if valueErr != nil {
		return p, fmt.Errorf("metrics[%d] (%q): %w: %w", idx, p.Name, valueErr, hub.ErrInvalid)
	}
	if p.Name == "" {
		return p, fmt.Errorf("metrics[%d]: missing \"name\": %w", idx, hub.ErrInvalid)
	}
	if !hasValue {
		return p, fmt.Errorf("metrics[%d] (%q): missing \"value\": %w", idx, p.Name, hub.ErrInvalid)
	}
	return p, nil
}

// jsonNumber reports whether b is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}
