package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
)

// MaxConds bounds the number of conditions of one filter.
const MaxConds = 32

// Parse parses a filter expression. An empty (or blank) expression is no
// condition. Errors wrap hub.ErrInvalid and name the 1-based position and
// what was expected there.
func Parse(expr string) ([]hub.Cond, error) {
	p := &parser{s: expr}
	p.skipSpace()
	if p.i == len(p.s) {
		return nil, nil
	}
	var conds []hub.Cond
	for {
		c, err := p.cond()
		if err != nil {
			return nil, err
		}
		conds = append(conds, c)
		if len(conds) > MaxConds {
			return nil, fmt.Errorf("filter: more than %d conditions: %w", MaxConds, hub.ErrInvalid)
		}
		p.skipSpace()
		if p.i == len(p.s) {
			return conds, nil
		}
		start := p.i
		w := p.word()
		if !strings.EqualFold(w, "and") {
			return nil, p.errAt(start, `"and" or the end of the filter`)
		}
		if p.i < len(p.s) && !isSpace(p.s[p.i]) {
			return nil, p.errAt(start, `"and" followed by a space`)
		}
		p.skipSpace()
	}
}

// ParseOrder parses an order_by value such as "metrics.accuracy:desc".
func ParseOrder(s string) (hub.Order, error) {
	name, dir, hasDir := strings.Cut(s, ":")
	var o hub.Order
	switch {
	case !hasDir:
	case strings.EqualFold(dir, "desc"):
		o.Desc = true
	case strings.EqualFold(dir, "asc"):
	default:
		return o, fmt.Errorf("order_by %q: direction %q: expected asc or desc: %w", s, dir, hub.ErrInvalid)
	}
	if name == "created_at" {
		o.Field = hub.Field{Kind: hub.FieldCreatedAt}
		return o, nil
	}
	f, ok, err := splitField(name)
	if err != nil {
		return o, fmt.Errorf("order_by %q: %w", s, err)
	}
	if !ok || f.Kind == hub.FieldStatus {
		return o, fmt.Errorf("order_by %q: expected metrics.NAME, params.NAME, tags.NAME or created_at, optionally followed by :asc or :desc: %w", s, hub.ErrInvalid)
	}
	o.Field = f
	return o, nil
}

// splitField recognizes "metrics.K", "params.K", "tags.K" and "status".
func splitField(w string) (hub.Field, bool, error) {
	if w == "status" {
		return hub.Field{Kind: hub.FieldStatus}, true, nil
	}
	kind, key, ok := strings.Cut(w, ".")
	if !ok {
		return hub.Field{}, false, nil
	}
	var k hub.FieldKind
	switch kind {
	case "metrics":
		k = hub.FieldMetric
	case "params":
		k = hub.FieldParam
	case "tags":
		k = hub.FieldTag
	default:
		return hub.Field{}, false, nil
	}
	if err := hub.CheckKey(kind[:len(kind)-1], key); err != nil {
		return hub.Field{}, false, err
	}
	return hub.Field{Kind: k, Name: key}, true, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) errAt(pos int, expected string) error {
	found := "end of filter"
	if pos < len(p.s) {
		rest := p.s[pos:]
		if len(rest) > 16 {
			rest = rest[:16] + "…"
		}
		found = strconv.Quote(rest)
	}
	return fmt.Errorf("filter: at position %d: expected %s, found %s: %w", pos+1, expected, found, hub.ErrInvalid)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == '/' || c == '+'
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) && isSpace(p.s[p.i]) {
		p.i++
	}
}

// word consumes a run of identifier/number bytes.
func (p *parser) word() string {
	start := p.i
	for p.i < len(p.s) && isWordByte(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) cond() (hub.Cond, error) {
	const fieldExp = "metrics.NAME, params.NAME, tags.NAME or status"
	start := p.i
	w := p.word()
	if w == "" {
		return hub.Cond{}, p.errAt(start, fieldExp)
	}
	f, ok, err := splitField(w)
	if err != nil {
		return hub.Cond{}, fmt.Errorf("filter: at position %d: %w", start+1, err)
	}
	if !ok {
		return hub.Cond{}, p.errAt(start, fieldExp)
	}
	p.skipSpace()
	opPos := p.i
	op := p.op()
	if op == "" {
		return hub.Cond{}, p.errAt(opPos, "an operator (= != < <= > >=)")
	}
	p.skipSpace()
	valPos := p.i
	c := hub.Cond{Field: f, Op: op}
	if p.i < len(p.s) && (p.s[p.i] == '\'' || p.s[p.i] == '"') {
		str, err := p.quoted()
		if err != nil {
			return hub.Cond{}, err
		}
		if f.Kind == hub.FieldMetric {
			return hub.Cond{}, p.errAt(valPos, "a number (metrics compare with numbers)")
		}
		c.Value = str
	} else {
		num := p.word()
		if num == "" {
			return hub.Cond{}, p.errAt(valPos, "a number or a quoted string")
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return hub.Cond{}, p.errAt(valPos, "a finite number or a quoted string")
		}
		if f.Kind == hub.FieldMetric {
			c.Value = v
		} else {
			c.Value = num
		}
	}
	if f.Kind == hub.FieldStatus {
		st := hub.RunStatus(c.Value.(string))
		if op != "=" && op != "!=" {
			return hub.Cond{}, p.errAt(opPos, "= or != (status compares for equality)")
		}
		switch st {
		case hub.StatusQueued, hub.StatusRunning, hub.StatusCompleted, hub.StatusFailed, hub.StatusCanceled:
		default:
			return hub.Cond{}, p.errAt(valPos, "a status: queued, running, completed, failed or canceled")
		}
	}
	return c, nil
}

func (p *parser) op() string {
	rest := p.s[p.i:]
	for _, op := range []string{"!=", "<=", ">=", "==", "=", "<", ">"} {
		if strings.HasPrefix(rest, op) {
			p.i += len(op)
			if op == "==" {
				return "="
			}
			return op
		}
	}
	return ""
}

// quoted consumes a string quoted with ' or "; the quote is escaped inside
// by doubling it.
func (p *parser) quoted() (string, error) {
	start := p.i
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		if c == q {
			if p.i < len(p.s) && p.s[p.i] == q {
				b.WriteByte(q)
				p.i++
				continue
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return "", p.errAt(start, fmt.Sprintf("a string closed by %c", q))
}
