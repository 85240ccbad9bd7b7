package filter

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestParse(t *testing.T) {
	m := func(name, op string, v any) hub.Cond {
		return hub.Cond{Field: hub.Field{Kind: hub.FieldMetric, Name: name}, Op: op, Value: v}
	}
	for _, tc := range []struct {
		name, in string
		want     []hub.Cond
	}{
		{"empty", "", nil},
		{"blank", "  \t", nil},
		{"metric", "metrics.acc > 0.9", []hub.Cond{m("acc", ">", 0.9)}},
		{"no spaces", "metrics.acc>=-1e-3", []hub.Cond{m("acc", ">=", -1e-3)}},
		{"slash and dots in key", "metrics.train/loss.avg <= 2", []hub.Cond{m("train/loss.avg", "<=", 2.0)}},
		{"double equals", "metrics.a == 1", []hub.Cond{m("a", "=", 1.0)}},
		{"and", "metrics.a < 1 AND params.opt = 'adam' and tags.team != \"x y\"", []hub.Cond{
			m("a", "<", 1.0),
			{Field: hub.Field{Kind: hub.FieldParam, Name: "opt"}, Op: "=", Value: "adam"},
			{Field: hub.Field{Kind: hub.FieldTag, Name: "team"}, Op: "!=", Value: "x y"},
		}},
		{"param number as text", "params.lr = 0.01", []hub.Cond{{Field: hub.Field{Kind: hub.FieldParam, Name: "lr"}, Op: "=", Value: "0.01"}}},
		{"doubled quote", "tags.q = 'it''s'", []hub.Cond{{Field: hub.Field{Kind: hub.FieldTag, Name: "q"}, Op: "=", Value: "it's"}}},
		{"status", "status = 'completed'", []hub.Cond{{Field: hub.Field{Kind: hub.FieldStatus}, Op: "=", Value: "completed"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"acc > 1", "position 1: expected metrics.NAME, params.NAME, tags.NAME or status"},
		{"metrics.acc", "position 12: expected an operator"},
		{"metrics.acc >", "position 14: expected a number or a quoted string, found end of filter"},
		{"metrics.acc > 'x'", "position 15: expected a number"},
		{"metrics.acc > 1 or metrics.b < 2", `position 17: expected "and"`},
		{"metrics.acc > 1 and", "position 20: expected metrics.NAME"},
		{"metrics.acc > abc", "position 15: expected a finite number"},
		{"metrics.acc > NaN", "position 15: expected a finite number"},
		{"params.x = 'open", "position 12: expected a string closed by '"},
		{"status > 'running'", "position 8: expected = or !="},
		{"status = 'done'", "position 10: expected a status"},
		{"metrics. > 1", "metric key"},
		{"metrics.acc = 1 metrics.b = 2", `position 17: expected "and"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, hub.ErrInvalid) {
				t.Errorf("Parse(%q) = %v, want an ErrInvalid mentioning %q", tc.in, err, tc.want)
			}
		})
	}
	if _, err := Parse(strings.Repeat("metrics.a = 1 and ", MaxConds) + "metrics.a = 1"); err == nil {
		t.Errorf("more than %d conditions accepted", MaxConds)
	}
}

func TestParseOrder(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want hub.Order
		err  string
	}{
		{in: "metrics.acc", want: hub.Order{Field: hub.Field{Kind: hub.FieldMetric, Name: "acc"}}},
		{in: "metrics.acc:desc", want: hub.Order{Field: hub.Field{Kind: hub.FieldMetric, Name: "acc"}, Desc: true}},
		{in: "params.lr:ASC", want: hub.Order{Field: hub.Field{Kind: hub.FieldParam, Name: "lr"}}},
		{in: "created_at:desc", want: hub.Order{Field: hub.Field{Kind: hub.FieldCreatedAt}, Desc: true}},
		{in: "status", err: "expected metrics.NAME"},
		{in: "metrics.acc:down", err: "expected asc or desc"},
		{in: "metrics.a b", err: "metric key"},
	} {
		got, err := ParseOrder(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseOrder(%q) = %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseOrder(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseFilter checks that Parse never panics, that errors are
// ErrInvalid with a position or a key rule, and that accepted filters have
// well-typed values.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "metrics.acc > 0.9", "params.x = 'a''b' and tags.y != \"z\"", "status = 'failed'",
		"metrics.a >= -1e308 AND metrics.b < 2", "metrics.", "'", "params.x = \"", "metrics.a = 1 and"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		conds, err := Parse(s)
		if err != nil {
			if !errors.Is(err, hub.ErrInvalid) {
				t.Fatalf("Parse(%q) error %v is not ErrInvalid", s, err)
			}
			return
		}
		if len(conds) > MaxConds {
			t.Fatalf("Parse(%q) returned %d conditions", s, len(conds))
		}
		for _, c := range conds {
			switch c.Field.Kind {
			case hub.FieldMetric:
				if _, ok := c.Value.(float64); !ok {
					t.Fatalf("Parse(%q): metric value %T", s, c.Value)
				}
			case hub.FieldParam, hub.FieldTag, hub.FieldStatus:
				if _, ok := c.Value.(string); !ok {
					t.Fatalf("Parse(%q): %s value %T", s, c.Field, c.Value)
				}
			default:
				t.Fatalf("Parse(%q): field kind %q", s, c.Field.Kind)
			}
			if _, ok := map[string]bool{"=": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}[c.Op]; !ok {
				t.Fatalf("Parse(%q): op %q", s, c.Op)
			}
		}
	})
}
