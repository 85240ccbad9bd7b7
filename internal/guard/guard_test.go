package guard

import (
	"errors"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/scoring"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		col       int
		msg       string
	}{
		{"empty", "", 1, "empty expression"},
		{"blank", "   ", 4, "empty expression"},
		{"unknown metric", "error_rat > 0.05", 1, `unknown metric "error_rat"`},
		{"missing op", "error_rate 0.05", 12, `expected >, >=, < or <=`},
		{"equals", "error_rate == 0.05", 12, `unsupported operator "=="`},
		{"missing value", "error_rate >", 13, "expected a fraction"},
		{"duration without unit", "latency_p99 > 50", 15, "missing unit"},
		{"bad unit", "latency_p99 > 50kg", 15, `unknown unit "kg"`},
		{"rate out of range", "error_rate > 1.5", 14, "out of range"},
		{"rate percent out of range", "error_rate > 150%", 14, "out of range"},
		{"rate with duration", "error_rate > 5ms", 14, `unexpected unit "ms"`},
		{"fractional count", "requests < 1.5", 12, "non-negative integer"},
		{"trailing", "error_rate > 0.05 latency_p99 > 1s", 19, `unexpected "latency_p99", expected "and", "or" or the end`},
		{"dangling or", "error_rate > 0.05 or", 21, "expected a metric"},
		{"unclosed paren", "(error_rate > 0.05", 19, `expected ")" to close the "(" at column 1`},
		{"stray close", "error_rate > 0.05)", 18, `unexpected ")"`},
		{"bad char", "error_rate > 0.05 & x", 19, `unexpected character '&'`},
		{"negative", "error_rate > -1", 14, `unexpected character '-'`},
		{"keyword as metric", "and > 1", 1, "expected a metric"},
		{"not a number", "latency_p99 > 1.2.3ms", 15, "not a number"},
		{"too deep", strings.Repeat("(", 40) + "errors > 1" + strings.Repeat(")", 40), 33, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.src)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, want a *SyntaxError", tt.src, err)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("errors.Is(%v, ErrSyntax) = false", err)
			}
			if se.Col != tt.col || !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("Parse(%q) = column %d %q, want column %d containing %q", tt.src, se.Col, se.Msg, tt.col, tt.msg)
			}
		})
	}
}

// hist builds a request-time histogram with n observations in the bucket
// ending at bound (seconds).
func hist(bound float64, n uint64) scoring.HistogramStats {
	bounds := []float64{0.001, 0.01, 0.05, 0.1, 1}
	h := scoring.HistogramStats{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
	for i, b := range bounds {
		if b == bound {
			h.Counts[i] = n
		}
	}
	return h
}

func TestEval(t *testing.T) {
	fast := Window{Requests: 100, Errors: 1, Latency: hist(0.01, 100), Queue: hist(0.001, 100)}
	slow := Window{Requests: 100, Errors: 0, Latency: hist(1, 100), Queue: hist(0.1, 100)}
	failing := Window{Requests: 100, Errors: 50, Latency: hist(0.01, 100), Queue: hist(0.001, 100)}
	empty := Window{}
	tests := []struct {
		src    string
		w      Window
		want   bool
		reason string
	}{
		{"error_rate > 0.05", fast, false, ""},
		{"error_rate > 0.05", failing, true, "error_rate 0.5 > 0.05"},
		{"error_rate > 5%", failing, true, "error_rate 0.5 > 5%"},
		{"error_rate >= 1%", fast, true, "error_rate 0.01 >= 1%"},
		{"latency_p99 > 50ms", fast, false, ""},
		{"latency_p99 > 50ms", slow, true, "latency_p99 991ms > 50ms"},
		{"latency_p50 > 0.5s", slow, true, "latency_p50 550ms > 0.5s"},
		{"latency_p95 < 20ms", fast, true, "latency_p95 9.55ms < 20ms"},
		{"queue_p99 > 50ms", slow, true, "queue_p99 99.5ms > 50ms"},
		{"queue_p99 > 50000us", fast, false, ""},
		{"error_rate > 0.05 or latency_p99 > 50ms", slow, true, "latency_p99 991ms > 50ms"},
		{"error_rate > 0.05 or latency_p99 > 50ms", failing, true, "error_rate 0.5 > 0.05"},
		{"error_rate > 0.05 or latency_p99 > 50ms", fast, false, ""},
		{"error_rate > 0.05 and latency_p99 > 50ms", slow, false, ""},
		{"errors >= 10 and requests >= 50", failing, true, "errors 50 >= 10 and requests 100 >= 50"},
		{"(error_rate > 0.4 or errors > 1000) and requests > 10", failing, true, "error_rate 0.5 > 0.4 and requests 100 > 10"},
		{"not (latency_p99 < 1s)", fast, false, ""},
		{"not latency_p99 < 10ms", slow, true, "not (latency_p99 < 10ms)"},
		{"latency_p99 > 0ns", empty, false, ""},
		{"error_rate >= 0", empty, false, ""},
		{"requests < 1", empty, true, "requests 0 < 1"},
		{"  error_rate>0.05\tor\nlatency_p99>1m ", failing, true, "error_rate 0.5 > 0.05"},
	}
	for _, tt := range tests {
		r, err := Parse(tt.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		if r.String() != tt.src {
			t.Errorf("String() = %q, want %q", r.String(), tt.src)
		}
		got, reason := r.Eval(tt.w)
		if got != tt.want || reason != tt.reason {
			t.Errorf("%q.Eval = %v %q, want %v %q", tt.src, got, reason, tt.want, tt.reason)
		}
	}
}

func TestDelta(t *testing.T) {
	base := scoring.VersionStats{ID: 3, Requests: map[string]uint64{"ok": 10, "error": 2, "invalid": 1},
		Request: hist(0.01, 13), Queue: hist(0.001, 13)}
	cur := scoring.VersionStats{ID: 3, Requests: map[string]uint64{"ok": 15, "error": 7, "invalid": 4, "timeout": 1, "queue_full": 2, "canceled": 1},
		Request: hist(0.01, 30), Queue: hist(0.001, 30)}
	w := Delta(cur, base)
	if w.Requests != 17 || w.Errors != 8 {
		t.Errorf("Delta = %d requests, %d errors; want 17, 8 (invalid and canceled are not errors)", w.Requests, w.Errors)
	}
	if w.Latency.Count() != 17 || w.Queue.Count() != 17 {
		t.Errorf("Delta histograms count %d and %d, want 17", w.Latency.Count(), w.Queue.Count())
	}
	if z := Delta(cur, scoring.VersionStats{}); z.Requests != 30 || z.Errors != 10 {
		t.Errorf("Delta from zero = %d, %d; want 30, 10", z.Requests, z.Errors)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"error_rate > 0.05 or latency_p99 > 50ms",
		"(error_rate > 5% and requests >= 100) or not queue_p99 <= 1.5e-3s",
		"latency_p50 > 2µs", "errors > 3", "((", "error_rate >", "1e", "latency_p99 > 1e+3ms",
	} {
		f.Add(s)
	}
	w := Window{Requests: 10, Errors: 3, Latency: hist(0.05, 10), Queue: hist(0.001, 10)}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %v is not a *SyntaxError", s, err)
			}
			if se.Col < 1 || se.Col > len(s)+1 {
				t.Fatalf("Parse(%q) column %d outside 1..%d", s, se.Col, len(s)+1)
			}
			return
		}
		ok, reason := r.Eval(w)
		if ok != (reason != "") {
			t.Fatalf("%q.Eval = %v with reason %q", s, ok, reason)
		}
		// A parsed rule is stable under re-parsing its own text.
		r2, err := Parse(r.String())
		if err != nil {
			t.Fatalf("reparse %q: %v", s, err)
		}
		if ok2, reason2 := r2.Eval(w); ok2 != ok || reason2 != reason {
			t.Fatalf("reparse %q evaluates differently", s)
		}
	})
}
