package scoring_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// nodeSuite is where the setup step installs the ONNX backend node tests.
const nodeSuite = "/usr/share/libonnx-testdata/data/node"

// Tolerances of the ONNX backend test runner.
const rtol, atol = 1e-3, 1e-7

type verdict int

const (
	passed verdict = iota
	notApplicable
	failed
)

type caseResult struct {
	name    string
	verdict verdict
	reason  string // category, for grouping
	detail  string
	// ortOff: ONNX Runtime's in-process output differs from the suite's
	// expected output (reported, not a failure of the endpoint).
	ortOff string
}

// TestConformance runs every case of the ONNX node test suite whose types
// the endpoint supports through the HTTP endpoint (v2 infer, JSON) and
// fails when an answer differs from in-process ONNX Runtime on the same
// inputs. Cases ONNX Runtime cannot load or run, or that use unsupported
// types, are not applicable; cases where ONNX Runtime itself disagrees with
// the suite's expected outputs are reported. Run with -v for the summary.
func TestConformance(t *testing.T) {
	entries, err := os.ReadDir(nodeSuite)
	if err != nil {
		t.Fatalf("the setup step installs libonnx-testdata: %v", err)
	}
	if len(entries) < 100 {
		t.Fatalf("%s has only %d cases", nodeSuite, len(entries))
	}
	e := newEnv(t, scoring.ServerConfig{MaxBodyBytes: 512 << 20}, scoring.RegistryConfig{Batch: scoring.BatchConfig{MaxBatch: 1}})
	client := &http.Client{}

	results := make([]caseResult, len(entries))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Go(func() {
			for i := range next {
				results[i] = runCase(e, client, entries[i].Name())
			}
		})
	}
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()

	var ran, pass, na int
	naReasons := map[string][]string{}
	var ortOff, failures []string
	for _, r := range results {
		switch r.verdict {
		case passed:
			ran++
			pass++
		case failed:
			ran++
			failures = append(failures, fmt.Sprintf("%s: %s: %s", r.name, r.reason, r.detail))
		case notApplicable:
			na++
			naReasons[r.reason] = append(naReasons[r.reason], r.name)
		}
		if r.ortOff != "" {
			ortOff = append(ortOff, r.name+": "+r.ortOff)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "conformance: %d cases: ran %d, passed %d, failed %d, not applicable %d\n", len(results), ran, pass, len(failures), na)
	reasons := make([]string, 0, len(naReasons))
	for k := range naReasons {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool { return len(naReasons[reasons[i]]) > len(naReasons[reasons[j]]) })
	for _, k := range reasons {
		ex := naReasons[k]
		fmt.Fprintf(&b, "  not applicable %4d  %s (e.g. %s)\n", len(ex), k, strings.Join(ex[:min(3, len(ex))], ", "))
	}
	fmt.Fprintf(&b, "  onnx runtime differs from the suite's expected output (rtol %g, atol %g) in %d ran cases\n", rtol, atol, len(ortOff))
	for _, o := range ortOff[:min(10, len(ortOff))] {
		fmt.Fprintf(&b, "    %s\n", o)
	}
	t.Log(b.String())
	if ran < 300 {
		t.Errorf("only %d cases ran; the endpoint should cover most of the suite", ran)
	}
	for _, f := range failures {
		t.Errorf("HTTP differs from in-process ONNX Runtime: %s", f)
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

func na(name, reason string, err error) caseResult {
	d := ""
	if err != nil {
		d = err.Error()
	}
	return caseResult{name: name, verdict: notApplicable, reason: reason, detail: d}
}

func runCase(e *env, client *http.Client, name string) caseResult {
	dir := filepath.Join(nodeSuite, name)
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return na(name, "no test data set", nil)
	}
	r, err := ort.Open(filepath.Join(dir, "model.onnx"), ort.Config{}, discard())
	if err != nil {
		if errors.Is(err, scoring.ErrUnsupported) {
			return na(name, "model signature: "+unsupportedWhat(err.Error()), err)
		}
		return na(name, "onnx runtime cannot load the model", err)
	}
	loaded := false
	defer func() {
		if !loaded {
			r.Close()
		}
	}()
	sig := r.Signature()
	set := sets[0]
	inputs, res := readTensors(name, set, "input")
	if res != nil {
		return *res
	}
	if len(inputs) != len(sig.Inputs) {
		return na(name, "test data gives a different number of inputs than the model declares (optional inputs)", nil)
	}
	for i := range inputs {
		if sig.InputIndex(inputs[i].Name) < 0 {
			inputs[i].Name = sig.Inputs[i].Name
		}
	}
	ordered, err := sig.Validate(inputs)
	if err != nil {
		return na(name, "test inputs do not match the declared signature", err)
	}
	ctx := context.Background()
	want, err := r.Run(ctx, ordered)
	if err != nil {
		return na(name, "in-process onnx runtime fails on the test inputs", err)
	}
	again, err := r.Run(ctx, ordered)
	if err != nil || !sameOutputs(want, again) || randomOps(filepath.Join(dir, "model.onnx")) {
		return na(name, "nondeterministic operator (random, or two in-process runs differ)", err)
	}
	result := caseResult{name: name, verdict: passed}
	if expected, res := readTensors(name, set, "output"); res == nil {
		result.ortOff = compareExpected(want, expected)
	}

	if _, err := e.reg.Load(ctx, name, "1", r, scoring.WithWarmUp(ordered)); err != nil {
		loaded = true // Load closed it
		return caseResult{name: name, verdict: failed, reason: "load", detail: err.Error()}
	}
	loaded = true
	defer e.reg.Unload(ctx, name, "1")

	body := scoring.AppendInferRequest(nil, "c", inputs)
	resp, err := client.Post(e.url+"/v2/models/"+name+"/infer", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return caseResult{name: name, verdict: failed, reason: "http", detail: err.Error()}
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	var out struct {
		Error   string
		Outputs []struct {
			Name     string
			Datatype string
			Shape    []int64
			Data     []any
		}
	}
	if err := dec.Decode(&out); err != nil || resp.StatusCode != 200 {
		return caseResult{name: name, verdict: failed, reason: "http status", detail: fmt.Sprintf("%d %v %s", resp.StatusCode, err, out.Error)}
	}
	if len(out.Outputs) != len(want) {
		return caseResult{name: name, verdict: failed, reason: "output count", detail: fmt.Sprintf("%d outputs, in-process %d", len(out.Outputs), len(want))}
	}
	for i, o := range out.Outputs {
		w := want[i]
		if o.Name != w.Name || o.Datatype != w.DataType.String() || !slices.Equal(o.Shape, w.Shape) {
			return caseResult{name: name, verdict: failed, reason: "output metadata",
				detail: fmt.Sprintf("output %d: %s %s %v, in-process %s %s %v", i, o.Name, o.Datatype, o.Shape, w.Name, w.DataType, w.Shape)}
		}
		got, err := canonicalJSON(o.Data, w.DataType)
		if err != nil {
			return caseResult{name: name, verdict: failed, reason: "output data", detail: err.Error()}
		}
		if exp := canonical(w.Data); !slices.Equal(got, exp) {
			return caseResult{name: name, verdict: failed, reason: "output data",
				detail: fmt.Sprintf("output %q: HTTP %v, in-process %v", o.Name, clip(got), clip(exp))}
		}
	}
	return result
}

// randomOps reports whether the model uses an operator whose output is
// random by design (for Dropout: in training mode, an input ONNX Runtime
// honours at run time), so two runs may legitimately differ.
func randomOps(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	m, err := onnx.Decode(b)
	if err != nil || m.Graph == nil {
		return false
	}
	for _, n := range m.Graph.Nodes {
		switch n.OpType {
		case "Bernoulli", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial":
			return true
		case "Dropout":
			if len(n.Inputs) >= 3 && n.Inputs[2] != "" {
				return true // training_mode given
			}
		}
	}
	return false
}

func clip(s []string) []string { return s[:min(8, len(s))] }

func unsupportedWhat(msg string) string {
	if i := strings.Index(msg, "has element type "); i >= 0 {
		f := strings.Fields(msg[i+len("has element type "):])
		if len(f) > 0 {
			return "unsupported element type " + strings.TrimSuffix(strings.TrimPrefix(f[0], "ONNX_TENSOR_ELEMENT_DATA_TYPE_"), ":")
		}
	}
	if strings.Contains(msg, "only tensors") {
		return "non-tensor input or output (sequence, map, optional)"
	}
	return digits.ReplaceAllString(msg, "N")
}

// readTensors reads kind_N.pb (kind is input or output) in order.
func readTensors(name, set, kind string) ([]scoring.Tensor, *caseResult) {
	var out []scoring.Tensor
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(set, fmt.Sprintf("%s_%d.pb", kind, i)))
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		if err != nil {
			r := na(name, "unreadable test data", err)
			return nil, &r
		}
		ot, err := onnx.DecodeTensor(b)
		if err != nil {
			r := na(name, "test data the onnx package cannot decode", err)
			return nil, &r
		}
		dt, ok := fromONNX(ot.DataType)
		if !ok {
			r := na(name, "test "+kind+" of unsupported type "+ot.DataType.String(), nil)
			return nil, &r
		}
		if scoring.DataTypeOf(ot.Data) != dt {
			r := na(name, "test data in an unexpected Go type", fmt.Errorf("%T for %s", ot.Data, dt))
			return nil, &r
		}
		out = append(out, scoring.Tensor{Name: ot.Name, DataType: dt, Shape: ot.Dims, Data: ot.Data})
	}
}

func fromONNX(t onnx.DataType) (scoring.DataType, bool) {
	m := map[onnx.DataType]scoring.DataType{
		onnx.Float: scoring.Float32, onnx.Double: scoring.Float64,
		onnx.Int8: scoring.Int8, onnx.Int16: scoring.Int16, onnx.Int32: scoring.Int32, onnx.Int64: scoring.Int64,
		onnx.Uint8: scoring.Uint8, onnx.Uint16: scoring.Uint16, onnx.Uint32: scoring.Uint32, onnx.Uint64: scoring.Uint64,
		onnx.Bool: scoring.Bool,
	}
	dt, ok := m[t]
	return dt, ok
}

// canonical renders each element so that equal values (NaN included)
// compare equal as strings.
func canonical(d any) []string {
	v := reflect.ValueOf(d)
	out := make([]string, v.Len())
	for i := range out {
		switch x := v.Index(i).Interface().(type) {
		case float32:
			out[i] = fmtFloat(float64(x), 32)
		case float64:
			out[i] = fmtFloat(x, 64)
		default:
			out[i] = fmt.Sprint(x)
		}
	}
	return out
}

func fmtFloat(f float64, bits int) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// canonicalJSON parses JSON elements (decoded with UseNumber) independently
// of the scoring package's decoder.
func canonicalJSON(data []any, dt scoring.DataType) ([]string, error) {
	out := make([]string, len(data))
	for i, e := range data {
		switch x := e.(type) {
		case bool:
			out[i] = strconv.FormatBool(x)
		case string:
			switch x {
			case "NaN":
				out[i] = "NaN"
			case "Infinity":
				out[i] = "+Inf"
			case "-Infinity":
				out[i] = "-Inf"
			default:
				return nil, fmt.Errorf("element %d: string %q", i, x)
			}
		case json.Number:
			switch dt {
			case scoring.Float32, scoring.Float64:
				bits := 64
				if dt == scoring.Float32 {
					bits = 32
				}
				f, err := strconv.ParseFloat(string(x), bits)
				if err != nil {
					return nil, fmt.Errorf("element %d: %w", i, err)
				}
				out[i] = fmtFloat(f, bits)
			case scoring.Uint64, scoring.Uint32, scoring.Uint16, scoring.Uint8:
				u, err := strconv.ParseUint(string(x), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("element %d: %w", i, err)
				}
				out[i] = strconv.FormatUint(u, 10)
			default:
				n, err := strconv.ParseInt(string(x), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("element %d: %w", i, err)
				}
				out[i] = strconv.FormatInt(n, 10)
			}
		default:
			return nil, fmt.Errorf("element %d: %T", i, e)
		}
	}
	return out, nil
}

func sameOutputs(a, b []scoring.Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !slices.Equal(a[i].Shape, b[i].Shape) || !slices.Equal(canonical(a[i].Data), canonical(b[i].Data)) {
			return false
		}
	}
	return true
}

// compareExpected checks ONNX Runtime's outputs against the suite's, like
// the ONNX backend runner: floats with rtol/atol, the rest exactly. It
// returns "" when they agree.
func compareExpected(got, want []scoring.Tensor) string {
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.DataType != w.DataType || numel(g.Shape) != numel(w.Shape) {
			return fmt.Sprintf("output %d: %s%v, expected %s%v", i, g.DataType, g.Shape, w.DataType, w.Shape)
		}
		gv, wv := reflect.ValueOf(g.Data), reflect.ValueOf(w.Data)
		for k := range gv.Len() {
			a, b := gv.Index(k).Interface(), wv.Index(k).Interface()
			var fa, fb float64
			switch x := a.(type) {
			case float32:
				fa, fb = float64(x), float64(b.(float32))
			case float64:
				fa, fb = x, b.(float64)
			default:
				if a != b {
					return fmt.Sprintf("output %d element %d: %v, expected %v", i, k, a, b)
				}
				continue
			}
			if math.IsNaN(fa) && math.IsNaN(fb) || fa == fb {
				continue
			}
			if math.IsNaN(fa) || math.IsNaN(fb) || math.Abs(fa-fb) > atol+rtol*math.Abs(fb) {
				return fmt.Sprintf("output %d element %d: %v, expected %v", i, k, fa, fb)
			}
		}
	}
	return ""
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}
