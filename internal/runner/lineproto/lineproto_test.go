package lineproto

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Directive
	}{
		{"metric with step", "::metric name=loss value=0.5 step=3", Directive{Kind: Metric, Name: "loss", Value: "0.5", Num: 0.5, Step: 3, HasStep: true}},
		{"metric without step", "::metric name=train/acc value=1e-3", Directive{Kind: Metric, Name: "train/acc", Value: "1e-3", Num: 0.001}},
		{"fields in any order, extra spaces", "::metric   step=0\tvalue=-2   name=l ", Directive{Kind: Metric, Name: "l", Value: "-2", Num: -2, HasStep: true}},
		{"param quoted", `::param name=optimizer value="adam with warmup"`, Directive{Kind: Param, Name: "optimizer", Value: "adam with warmup"}},
		{"tag escapes", `::tag name=note value="say \"hi\"\\n\n"`, Directive{Kind: Tag, Name: "note", Value: "say \"hi\"\\n\n"}},
		{"empty quoted value", `::tag name=x value=""`, Directive{Kind: Tag, Name: "x", Value: ""}},
		{"quoted name", `::param name="lr" value=0.1`, Directive{Kind: Param, Name: "lr", Value: "0.1"}},
		{"value with equals", `::param name=expr value=a=b`, Directive{Kind: Param, Name: "expr", Value: "a=b"}},
		{"crlf", "::param name=a value=b\r", Directive{Kind: Param, Name: "a", Value: "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := Parse(tc.line)
			if err != nil || !ok {
				t.Fatalf("Parse(%q) = ok %v, err %v", tc.line, ok, err)
			}
			if d != tc.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tc.line, d, tc.want)
			}
		})
	}
}

func TestParseNotDirective(t *testing.T) {
	for _, line := range []string{"", "hello", " ::metric name=a value=1", ":metric", "epoch 1 :: loss"} {
		if _, ok, err := Parse(line); ok || err != nil {
			t.Errorf("Parse(%q) = ok %v err %v, want not a directive", line, ok, err)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		line, wantErr string
	}{
		{"::", "missing directive kind"},
		{"::warning::disk full", `unknown directive "warning"`},
		{"::metricx name=a value=1", `unknown directive "metricx"`},
		{"::metric name=a", "missing value="},
		{"::metric value=1", "missing name="},
		{"::metric name=a value=abc", `value "abc" is not a finite number`},
		{"::metric name=a value=NaN", "not a finite number"},
		{"::metric name=a value=+Inf", "not a finite number"},
		{"::metric name=a value=1 step=-1", "not a non-negative integer"},
		{"::metric name=a value=1 step=1.5", "not a non-negative integer"},
		{"::param name=a value=1 step=1", `"step" is only allowed on metric`},
		{"::metric name=a name=b value=1", `field "name" given twice`},
		{"::metric name=a value=1 color=red", `unknown field "color"`},
		{"::metric name value=1", `want '=' after field "name"`},
		{"::metric name= value=1", "empty value"},
		{`::param name=a value="open`, "column 22: unterminated quoted value"},
		{`::param name=a value="x"y`, `want a space after the value of "value"`},
		{`::param name=a value=x"y`, `unexpected '"'`},
		{`::param name=a value="\q"`, `unknown escape \q`},
		{"::param name=/bad value=1", "must be 1-250 characters"},
		{"::param name=a value=" + strings.Repeat("x", 8001), "exceeds the limit of 8000"},
	}
	for _, tc := range tests {
		t.Run(tc.line[:min(len(tc.line), 40)], func(t *testing.T) {
			_, ok, err := Parse(tc.line)
			if !ok || err == nil {
				t.Fatalf("Parse(%q) = ok %v, err %v; want a malformed directive", tc.line, ok, err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"::metric name=loss value=0.5 step=1", `::param name=a value="b c"`, "::tag name=x value=\"\\\"\"",
		"::", "::metric", `::param name="`, "hello", "::metric name=a value=1e308 step=9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		d, ok, err := Parse(line)
		if !ok {
			if err != nil || IsDirective(line) {
				t.Fatalf("Parse(%q): ok=false with err %v", line, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrMalformed", line, err)
			}
			return
		}
		if d.Name == "" || (d.Kind != Metric && d.Kind != Param && d.Kind != Tag) {
			t.Fatalf("Parse(%q) accepted %+v", line, d)
		}
		if d.Kind != Metric && (d.HasStep || d.Num != 0) {
			t.Fatalf("Parse(%q): non-metric with numeric fields %+v", line, d)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	lines := []string{"::metric name=train/loss value=0.123456789 step=1234", `::param name=optimizer value="adam with warmup"`, "epoch 3 done"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _, _ = Parse(lines[i%len(lines)])
	}
}
