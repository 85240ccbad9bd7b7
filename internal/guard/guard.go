package guard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/atelier-ml/atelier/scoring"
)

// MaxLen is the longest expression Parse accepts, in bytes.
const MaxLen = 1024

// maxDepth bounds nesting ("not", parentheses) so a hostile expression
// cannot exhaust the stack.
const maxDepth = 32

// Metric is a quantity a rule compares.
type Metric int

// The metrics of the language (see the package documentation).
const (
	ErrorRate Metric = iota + 1
	LatencyP50
	LatencyP95
	LatencyP99
	QueueP99
	Requests
	Errors
)

var metricNames = map[string]Metric{
	"error_rate":  ErrorRate,
	"latency_p50": LatencyP50,
	"latency_p95": LatencyP95,
	"latency_p99": LatencyP99,
	"queue_p99":   QueueP99,
	"requests":    Requests,
	"errors":      Errors,
}

func (m Metric) String() string {
	for k, v := range metricNames {
		if v == m {
			return k
		}
	}
	return fmt.Sprintf("Metric(%d)", int(m))
}

func (m Metric) isDuration() bool {
	return m == LatencyP50 || m == LatencyP95 || m == LatencyP99 || m == QueueP99
}

// Window is what a rule is evaluated on: one version's requests between
// two snapshots.
type Window struct {
	Requests uint64 // every request, whatever its outcome
	Errors   uint64 // error, timeout, unavailable, queue_full
	// Latency and Queue are the request and queue-time histograms (seconds)
	// of the window.
	Latency, Queue scoring.HistogramStats
}

// failedOutcomes are the outcomes counted as errors.
var failedOutcomes = [...]string{"error", "timeout", "unavailable", "queue_full"}

// Delta is the window between base and cur, two snapshots of the same load
// (same ID; a zero base means since the load).
func Delta(cur, base scoring.VersionStats) Window {
	var w Window
	for k, n := range cur.Requests {
		d := n - base.Requests[k]
		w.Requests += d
		for _, f := range failedOutcomes {
			if k == f {
				w.Errors += d
			}
		}
	}
	w.Latency = cur.Request.Sub(base.Request)
	w.Queue = cur.Queue.Sub(base.Queue)
	return w
}

// value returns the metric's value in the window (seconds for durations)
// and whether it is defined.
func (w Window) value(m Metric) (float64, bool) {
	q := func(h scoring.HistogramStats, p float64) (float64, bool) {
		v := h.Quantile(p)
		return v, !math.IsNaN(v)
	}
	switch m {
	case ErrorRate:
		if w.Requests == 0 {
			return 0, false
		}
		return float64(w.Errors) / float64(w.Requests), true
	case LatencyP50:
		return q(w.Latency, 0.50)
	case LatencyP95:
		return q(w.Latency, 0.95)
	case LatencyP99:
		return q(w.Latency, 0.99)
	case QueueP99:
		return q(w.Queue, 0.99)
	case Requests:
		return float64(w.Requests), true
	case Errors:
		return float64(w.Errors), true
	}
	return 0, false
}

// Rule is a parsed expression. It is immutable and safe for concurrent use.
type Rule struct {
	src  string
	root node
}

// String returns the expression as written.
func (r *Rule) String() string { return r.src }

// Eval reports whether the rule holds on w and, if it does, the reason: the
// comparisons that made it true with the observed values, e.g.
// "error_rate 0.5 > 0.05".
func (r *Rule) Eval(w Window) (bool, string) {
	return r.root.eval(w)
}

type node interface {
	eval(w Window) (bool, string)
}

type orNode struct{ l, r node }
type andNode struct{ l, r node }
type notNode struct {
	x   node
	src string
}
type cmpNode struct {
	m   Metric
	op  string
	v   float64 // seconds for durations
	lit string  // the value as written
}

func (n orNode) eval(w Window) (bool, string) {
	if ok, why := n.l.eval(w); ok {
		return true, why
	}
	return n.r.eval(w)
}

func (n andNode) eval(w Window) (bool, string) {
	ok, a := n.l.eval(w)
	if !ok {
		return false, ""
	}
	ok, b := n.r.eval(w)
	if !ok {
		return false, ""
	}
	return true, a + " and " + b
}

func (n notNode) eval(w Window) (bool, string) {
	if ok, _ := n.x.eval(w); ok {
		return false, ""
	}
	return true, "not (" + n.src + ")"
}

func (n cmpNode) eval(w Window) (bool, string) {
	v, ok := w.value(n.m)
	if !ok {
		return false, ""
	}
	var hold bool
	switch n.op {
	case ">":
		hold = v > n.v
	case ">=":
		hold = v >= n.v
	case "<":
		hold = v < n.v
	case "<=":
		hold = v <= n.v
	}
	if !hold {
		return false, ""
	}
	return true, fmt.Sprintf("%s %s %s %s", n.m, formatValue(n.m, v), n.op, n.lit)
}

func formatValue(m Metric, v float64) string {
	switch {
	case m.isDuration():
		return time.Duration(v * float64(time.Second)).Round(time.Microsecond).String()
	case m == Requests || m == Errors:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Parse parses an expression. Errors are *SyntaxError with the column of
// the offending token and what was expected there.
func Parse(src string) (*Rule, error) {
	if len(src) > MaxLen {
		return nil, &SyntaxError{Col: MaxLen + 1, Msg: fmt.Sprintf("expression longer than %d bytes", MaxLen)}
	}
	if !utf8.ValidString(src) {
		return nil, &SyntaxError{Col: 1, Msg: "expression is not valid UTF-8"}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	if p.peek().kind == tEOF {
		return nil, &SyntaxError{Col: p.peek().col, Msg: "empty expression, expected a comparison such as error_rate > 0.05"}
	}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &SyntaxError{Col: t.col, Msg: fmt.Sprintf("unexpected %s, expected \"and\", \"or\" or the end", t.describe())}
	}
	return &Rule{src: src, root: root}, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber // number with an optional unit suffix, e.g. 50ms, 5%, 0.05
	tOp
	tLParen
	tRParen
)

type token struct {
	kind tokKind
	text string
	col  int // 1-based byte column
	end  int // byte offset after the token
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tIdent:
		return strconv.Quote(t.text)
	case tNumber:
		return "value " + strconv.Quote(t.text)
	}
	return strconv.Quote(t.text)
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdent(c byte) bool      { return isIdentStart(c) || c >= '0' && c <= '9' }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '(':
			i++
			toks = append(toks, token{tLParen, "(", start + 1, i})
		case c == ')':
			i++
			toks = append(toks, token{tRParen, ")", start + 1, i})
		case c == '>' || c == '<':
			i++
			if i < len(src) && src[i] == '=' {
				i++
			}
			toks = append(toks, token{tOp, src[start:i], start + 1, i})
		case c == '=' || c == '!':
			return nil, &SyntaxError{Col: start + 1, Msg: fmt.Sprintf("unsupported operator %q, expected >, >=, < or <=", opAt(src, start))}
		case isIdentStart(c):
			for i < len(src) && isIdent(src[i]) {
				i++
			}
			toks = append(toks, token{tIdent, src[start:i], start + 1, i})
		case isDigit(c) || c == '.':
			for i < len(src) && (isDigit(src[i]) || src[i] == '.') {
				i++
			}
			if i < len(src) && (src[i] == 'e' || src[i] == 'E') && i+1 < len(src) && (isDigit(src[i+1]) || (src[i+1] == '-' || src[i+1] == '+') && i+2 < len(src) && isDigit(src[i+2])) {
				i += 2
				for i < len(src) && isDigit(src[i]) {
					i++
				}
			}
			// unit suffix: letters, µ or %
			for i < len(src) {
				if isIdentStart(src[i]) || src[i] == '%' {
					i++
				} else if strings.HasPrefix(src[i:], "µ") {
					i += len("µ")
				} else {
					break
				}
			}
			toks = append(toks, token{tNumber, src[start:i], start + 1, i})
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, &SyntaxError{Col: start + 1, Msg: fmt.Sprintf("unexpected character %q", r)}
		}
	}
	toks = append(toks, token{tEOF, "", len(src) + 1, len(src)})
	return toks, nil
}

func opAt(src string, i int) string {
	if i+1 < len(src) && src[i+1] == '=' {
		return src[i : i+2]
	}
	return src[i : i+1]
}

type parser struct {
	src  string
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) keyword(k string) bool {
	t := p.peek()
	return t.kind == tIdent && t.text == k
}

func (p *parser) or(depth int) (node, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *parser) and(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (node, error) {
	t := p.peek()
	if depth >= maxDepth {
		return nil, &SyntaxError{Col: t.col, Msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	switch {
	case t.kind == tLParen:
		p.next()
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tRParen {
			return nil, &SyntaxError{Col: c.col, Msg: fmt.Sprintf("unexpected %s, expected \")\" to close the \"(\" at column %d", c.describe(), t.col)}
		}
		p.next()
		return x, nil
	case t.kind == tIdent && t.text == "not":
		p.next()
		startTok := p.peek()
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		end := p.toks[p.pos-1].end
		return notNode{x: x, src: p.src[startTok.col-1 : end]}, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (node, error) {
	t := p.next()
	if t.kind != tIdent || t.text == "and" || t.text == "or" {
		return nil, &SyntaxError{Col: t.col, Msg: fmt.Sprintf("unexpected %s, expected a metric (%s), \"not\" or \"(\"", t.describe(), metricList)}
	}
	m, ok := metricNames[t.text]
	if !ok {
		return nil, &SyntaxError{Col: t.col, Msg: fmt.Sprintf("unknown metric %q, expected one of %s", t.text, metricList)}
	}
	op := p.next()
	if op.kind != tOp {
		return nil, &SyntaxError{Col: op.col, Msg: fmt.Sprintf("unexpected %s after %s, expected >, >=, < or <=", op.describe(), t.text)}
	}
	vt := p.next()
	if vt.kind != tNumber {
		return nil, &SyntaxError{Col: vt.col, Msg: fmt.Sprintf("unexpected %s after %s %s, expected %s", vt.describe(), t.text, op.text, expects(m))}
	}
	v, err := parseValue(m, vt.text)
	if err != nil {
		return nil, &SyntaxError{Col: vt.col, Msg: fmt.Sprintf("%s for %s: %v", strconv.Quote(vt.text), t.text, err)}
	}
	return cmpNode{m: m, op: op.text, v: v, lit: vt.text}, nil
}

const metricList = "error_rate, latency_p50, latency_p95, latency_p99, queue_p99, requests, errors"

func expects(m Metric) string {
	switch {
	case m.isDuration():
		return "a duration such as 50ms"
	case m == ErrorRate:
		return "a fraction such as 0.05 or a percentage such as 5%"
	}
	return "a non-negative integer"
}

// splitUnit splits "50ms" into "50" and "ms".
func splitUnit(s string) (num, unit string) {
	i := 0
	for i < len(s) && (isDigit(s[i]) || s[i] == '.' || ((s[i] == 'e' || s[i] == 'E') && i+1 < len(s) && (isDigit(s[i+1]) || s[i+1] == '-' || s[i+1] == '+')) || ((s[i] == '-' || s[i] == '+') && i > 0 && (s[i-1] == 'e' || s[i-1] == 'E'))) {
		i++
	}
	return s[:i], s[i:]
}

var durationUnits = map[string]float64{
	"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60,
}

func parseValue(m Metric, lit string) (float64, error) {
	num, unit := splitUnit(lit)
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("not a number, expected %s", expects(m))
	}
	switch {
	case m.isDuration():
		if unit == "" {
			return 0, fmt.Errorf("missing unit, expected %s (units ns, us, ms, s, m)", expects(m))
		}
		scale, ok := durationUnits[unit]
		if !ok {
			return 0, fmt.Errorf("unknown unit %q, expected ns, us, ms, s or m", unit)
		}
		return f * scale, nil
	case m == ErrorRate:
		switch unit {
		case "":
		case "%":
			f /= 100
		default:
			return 0, fmt.Errorf("unexpected unit %q, expected %s", unit, expects(m))
		}
		if f < 0 || f > 1 {
			return 0, fmt.Errorf("out of range, expected a rate within [0, 1] (0%%..100%%)")
		}
		return f, nil
	}
	if unit != "" || f != math.Trunc(f) || f > 1<<53 {
		return 0, fmt.Errorf("expected %s", expects(m))
	}
	return f, nil
}
