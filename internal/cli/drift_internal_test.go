package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

func TestCaptureCSV(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := &captureWriter{w: bw, csv: true}
	bodies := []string{
		// Two samples of a [2, 3] input, flat data, plus a scalar-per-sample input.
		`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]},{"name":"b","shape":[2,1],"datatype":"BOOL","data":[true,false]}]}`,
		// Nested data.
		`{"id":"r","inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[[7,8.5,9]]},{"name":"b","shape":[1,1],"datatype":"BOOL","data":[[true]]}]}`,
	}
	for i, b := range bodies {
		if err := cw.write(hub.CapturedInput{ID: int64(i + 1), Body: json.RawMessage(b)}); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
	}
	bw.Flush()
	want := "x[0],x[1],x[2],b[0]\n1,2,3,1\n4,5,6,0\n7,8.5,9,1\n"
	if buf.String() != want {
		t.Fatalf("CSV:\n%s\nwant:\n%s", buf.String(), want)
	}
	if cw.requests != 2 || cw.samples != 3 {
		t.Errorf("counted %d requests, %d samples; want 2, 3", cw.requests, cw.samples)
	}
	for name, c := range map[string]struct{ body, want string }{
		"other shape": {`{"inputs":[{"name":"x","shape":[1,2],"data":[1,2]},{"name":"b","shape":[1,1],"data":[1]}]}`, "one sample shape"},
		"shape":       {`{"inputs":[{"name":"x","shape":[2,3],"data":[1,2]}]}`, `shape [2 3] does not match 2 values`},
		"strings":     {`{"inputs":[{"name":"x","shape":[1,1],"data":["a"]}]}`, `"a": expected a number`},
		"not v2":      {`[1,2]`, "not a v2 request body"},
	} {
		if err := cw.write(hub.CapturedInput{Body: json.RawMessage(c.body)}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
}

func TestCaptureNDJSON(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := &captureWriter{w: bw}
	for _, b := range []string{"{\n \"inputs\": [] }", `{"id":"2"}`} {
		if err := cw.write(hub.CapturedInput{Body: json.RawMessage(b)}); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	if want := "{\"inputs\":[]}\n{\"id\":\"2\"}\n"; buf.String() != want {
		t.Errorf("NDJSON %q, want %q", buf.String(), want)
	}
}

func TestDriftTable(t *testing.T) {
	p1, k1, p2, k2 := 0.05, 0.02, 0.4, 0.3
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rep := &hub.DriftReport{Deployment: "d", Model: "m", Version: 2, BaselineSource: "run w/abc baseline.csv",
		Since: now.Add(-time.Hour), Until: now, Threshold: 0.2, MinCount: 500, Status: hub.DriftDrifting, Drifting: true,
		Features: []hub.FeatureDrift{
			{Input: "x", Index: 0, PSI: &p1, KS: &k1, BaselineCount: 1000, Count: 900, BaselineMean: 1, Mean: 1.1, Judged: true},
			{Input: "x", Index: 1, PSI: &p2, KS: &k2, BaselineCount: 1000, Count: 900, BaselineMean: 1, Mean: 3, Judged: true, Drifting: true},
			{Input: "y", Index: 0, Count: 10},
		}}
	var buf bytes.Buffer
	driftTable(&buf, rep)
	out := buf.String()
	for _, want := range []string{"Baseline:\trun w/abc baseline.csv", "Status:\tdrifting (PSI threshold 0.2, at least 500 values per side)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Largest PSI first; an unjudged feature without PSI last.
	i1, i0, iy := strings.Index(out, "x[1]\t0.4000\t0.3000"), strings.Index(out, "x[0]\t0.0500"), strings.Index(out, "y[0]\t-\t-")
	if i1 < 0 || i0 < 0 || iy < 0 || !(i1 < i0 && i0 < iy) {
		t.Errorf("rows out of order or missing:\n%s", out)
	}
	if !strings.Contains(out, "3\tyes\n") {
		t.Errorf("x[1] not marked drifting:\n%s", out)
	}
}
