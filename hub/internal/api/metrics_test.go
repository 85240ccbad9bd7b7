package api

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

func TestDecodeMetricsMatchesEncodingJSON(t *testing.T) {
	in := `{"metrics": [{"name": "a\/b", "value": -1.5e-3, "step": 7, "timestamp": "2026-01-02T03:04:05.123Z"},
		{"value": 2, "name": "x"}, {"name": "y", "value": 0, "step": null, "timestamp": null}]}`
	got, err := decodeMetrics([]byte(in), 10)
	if err != nil {
		t.Fatal(err)
	}
	var want struct{ Metrics []hub.MetricPoint }
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want.Metrics) {
		t.Errorf("decodeMetrics = %+v, encoding/json = %+v", got, want.Metrics)
	}
	if got[0].Time != time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.UTC) {
		t.Errorf("time = %v", got[0].Time)
	}
}

// FuzzDecodeMetrics: the hand-written decoder never panics, fails only
// with ErrInvalid/ErrTooLarge, and whatever it accepts, encoding/json
// accepts with the same values.
func FuzzDecodeMetrics(f *testing.F) {
	for _, s := range []string{`{"metrics":[]}`, `{"metrics":[{"name":"a","value":1,"step":2}]}`, `{"metrics":[{"name":"a","value":"NaN"}]}`,
		`{"metrics":null}`, `{}`, `{"metrics":[{"name":"\u00e9","value":1e5,"timestamp":"2026-01-01T00:00:00Z"}]}`, `{"metrics":[{"name":"a","value":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeMetrics(b, 1000)
		if err != nil {
			if !errors.Is(err, hub.ErrInvalid) && !errors.Is(err, hub.ErrTooLarge) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		var want struct{ Metrics []hub.MetricPoint }
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("decodeMetrics accepted %q, encoding/json refuses: %v", b, err)
		}
		if len(got) != len(want.Metrics) {
			t.Fatalf("%q: %d points, encoding/json %d", b, len(got), len(want.Metrics))
		}
		for i := range got {
			g, w := got[i], want.Metrics[i]
			if g.Name != w.Name || g.Step != w.Step || !g.Time.Equal(w.Time) || math.IsNaN(g.Value) || g.Value != w.Value {
				t.Fatalf("%q: point %d = %+v, encoding/json %+v", b, i, g, w)
			}
		}
	})
}

func TestJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{"0": true, "-1.5e-3": true, "12E+4": true, "1": true,
		"01": false, "+1": false, ".5": false, "1.": false, "0x1p-2": false, "Inf": false, "1e": false, "-": false, "": false} {
		if got := jsonNumber([]byte(s)); got != want {
			t.Errorf("jsonNumber(%q) = %v", s, got)
		}
	}
}
