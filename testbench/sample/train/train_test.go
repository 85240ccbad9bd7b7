package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func loadData(t *testing.T) []Sample {
	t.Helper()
	all, err := LoadDigits("data/digits.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestLoadAndSplit(t *testing.T) {
	all := loadData(t)
	if len(all) != 1797 {
		t.Fatalf("%d rows, want 1797", len(all))
	}
	train, heldout := Split(all)
	if len(train) != 1437 || len(heldout) != 360 {
		t.Fatalf("split %d/%d, want 1437/360", len(train), len(heldout))
	}
	for i, s := range heldout {
		if s != all[5*i] {
			t.Fatalf("held-out row %d is not data row %d", i, 5*i)
		}
	}
	counts := make([]int, Classes)
	for _, s := range all {
		counts[s.Label]++
	}
	for d, n := range counts {
		if n < 170 {
			t.Errorf("digit %d has %d rows, want about 180", d, n)
		}
	}
}

func TestReadCSVErrors(t *testing.T) {
	row := strings.Repeat("0,", Pixels)
	cases := []struct{ name, in, want string }{
		{"empty", "", "no rows"},
		{"too few columns", "1,2,3\n", "line 1: 3 columns"},
		{"not a number", row[:len(row)-2] + "x,3\n", "line 1 column 64"},
		{"pixel too big", "17," + row[2:] + "3\n", "pixel 17 outside"},
		{"label out of range", row + "10\n", "label 10"},
		{"fractional label", row + "1.5\n", "label 1.5"},
		{"second line", row + "1\n" + row + "\n", "line 2 column 65"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestCSVRoundTrip(t *testing.T) {
	all := loadData(t)[:20]
	var buf bytes.Buffer
	if err := WriteCSV(&buf, all); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("%d rows back, want %d", len(got), len(all))
	}
	for i := range got {
		if got[i] != all[i] {
			t.Fatalf("row %d changed", i)
		}
	}
}

// TestGradients compares the analytic gradients with central differences.
func TestGradients(t *testing.T) {
	all := loadData(t)
	m := NewMLP(5, rand.New(rand.NewPCG(1, 2)))
	batch := all[:8]
	grads, _, _ := m.Gradients(batch)
	lossAt := func() float64 { _, l, _ := m.Gradients(batch); return l }
	const eps = 1e-6
	for pi, p := range m.params() {
		for _, j := range []int{0, len(p) / 2, len(p) - 1} {
			old := p[j]
			p[j] = old + eps
			up := lossAt()
			p[j] = old - eps
			down := lossAt()
			p[j] = old
			num := (up - down) / (2 * eps)
			if d := math.Abs(num - grads[pi][j]); d > 1e-5*math.Max(1, math.Abs(num)) {
				t.Errorf("param %d[%d]: analytic %g, numeric %g", pi, j, grads[pi][j], num)
			}
		}
	}
}

func TestTrainIsDeterministicAndLearns(t *testing.T) {
	train, heldout := Split(loadData(t))
	p := Params{LR: 0.05, Momentum: 0.9, Epochs: 5, Hidden: 16, BatchSize: 32, Seed: 7}
	var stats []EpochStats
	a := Train(train, heldout, p, func(s EpochStats) { stats = append(stats, s) }).Export()
	b := Train(train, heldout, p, nil).Export()
	if !slicesEqual(a.W1, b.W1) || !slicesEqual(a.B2, b.B2) {
		t.Fatal("two runs with the same seed gave different weights")
	}
	if len(stats) != 5 || stats[4].Epoch != 5 {
		t.Fatalf("stats %+v, want 5 epochs", stats)
	}
	if stats[4].Loss >= stats[0].Loss {
		t.Errorf("loss did not fall: %g → %g", stats[0].Loss, stats[4].Loss)
	}
	if acc := a.Accuracy(heldout); acc < 0.9 {
		t.Errorf("held-out accuracy %g after 5 epochs, want >= 0.9", acc)
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseFlags(t *testing.T) {
	env := map[string]string{"ATELIER_PARAM_LR": "0.2", "ATELIER_PARAM_BATCH_SIZE": "8", "ATELIER_PARAM_EPOCHS": "4"}
	getenv := func(k string) string { return env[k] }
	c, err := parseFlags([]string{"--epochs", "3"}, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.LR != 0.2 || c.BatchSize != 8 || c.Epochs != 3 || c.Hidden != 32 {
		t.Errorf("config %+v: want lr 0.2 and batch 8 from env, epochs 3 from the flag, hidden 32 by default", c.Params)
	}
	bad := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"ATELIER_PARAM_LR": "fast"}, nil, `ATELIER_PARAM_LR="fast"`},
		{map[string]string{"ATELIER_PARAM_HIDDEN": "1.5"}, nil, "ATELIER_PARAM_HIDDEN"},
		{nil, []string{"--lr", "0"}, "--lr 0"},
		{nil, []string{"--momentum", "1"}, "--momentum 1"},
		{nil, []string{"--epochs", "0"}, "--epochs 0"},
		{nil, []string{"--batch-size", "0"}, "--batch-size 0"},
		{nil, []string{"extra"}, "unexpected arguments"},
	}
	for _, b := range bad {
		_, err := parseFlags(b.args, func(k string) string { return b.env[k] }, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("env %v args %v: err = %v, want %q", b.env, b.args, err, b.want)
		}
	}
}

// TestRun runs the whole program and checks its line protocol and outputs.
func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "outputs")
	var stdout bytes.Buffer
	env := map[string]string{"ATELIER_PARAM_HIDDEN": "12"}
	if err := run([]string{"--epochs", "2", "--out", out}, &stdout, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	text := stdout.String()
	for _, want := range []string{
		"::param name=lr value=0.05\n",
		"::param name=hidden value=12\n",
		"::param name=epochs value=2\n",
		"::param name=batch_size value=32\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	metric := regexp.MustCompile(`(?m)^::metric name=(\w+) value=([0-9.e+-]+)( step=(\d+))?$`)
	got := map[string]int{}
	for _, m := range metric.FindAllStringSubmatch(text, -1) {
		got[m[1]]++
		if m[1] == "test_accuracy" && m[3] != "" {
			t.Errorf("test_accuracy has a step: %q", m[0])
		}
	}
	if got["loss"] != 2 || got["train_accuracy"] != 2 || got["accuracy"] != 2 || got["test_accuracy"] != 1 {
		t.Errorf("metric line counts %v, want 2 per epoch metric and one test_accuracy", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "::") && !metric.MatchString(line) && !strings.HasPrefix(line, "::param ") {
			t.Errorf("malformed protocol line %q", line)
		}
	}
	f, err := os.Open(filepath.Join(out, "heldout.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadCSV(f)
	if err != nil || len(rows) != 360 {
		t.Fatalf("heldout.csv: %d rows, err %v; want 360", len(rows), err)
	}
	baseline, err := os.ReadFile(filepath.Join(out, BaselineFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(baseline), "\n"), "\n")
	if len(lines) != 1+1437 || !strings.HasPrefix(lines[0], "pixels[0],pixels[1],") || !strings.HasSuffix(lines[0], ",pixels[63]") {
		t.Fatalf("baseline.csv: %d lines, header %.40q...; want a pixels[i] header and 1437 training rows", len(lines), lines[0])
	}
	for i, l := range lines[1:] {
		if n := strings.Count(l, ",") + 1; n != Pixels {
			t.Fatalf("baseline.csv line %d: %d columns, want %d (pixels only, no label)", i+2, n, Pixels)
		}
	}
	model, err := os.ReadFile(filepath.Join(out, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(model, []byte(Producer)) || !bytes.Contains(model, []byte("probabilities")) {
		t.Error("model.onnx lacks the producer name or output name")
	}
}

// walk returns the top-level fields of a protobuf message: varints as
// numbers, length-delimited fields as bytes. It is a minimal reader to
// check the encoder; the main module's test decodes the file fully.
func walk(t *testing.T, b []byte) map[int][]any {
	t.Helper()
	out := map[int][]any{}
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			t.Fatalf("bad tag")
		}
		b = b[n:]
		field := int(key >> 3)
		switch key & 7 {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				t.Fatal("bad varint")
			}
			out[field] = append(out[field], v)
			b = b[n:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				t.Fatal("bad length")
			}
			out[field] = append(out[field], b[n:n+int(l)])
			b = b[n+int(l):]
		case 5:
			out[field] = append(out[field], binary.LittleEndian.Uint32(b))
			b = b[4:]
		default:
			t.Fatalf("unexpected wire type %d", key&7)
		}
	}
	return out
}

func TestEncodeONNX(t *testing.T) {
	w := NewMLP(3, rand.New(rand.NewPCG(1, 1))).Export()
	m := walk(t, EncodeONNX(w))
	if m[1][0].(uint64) != IRVersion || string(m[2][0].([]byte)) != Producer {
		t.Errorf("ir_version %v producer %q", m[1], m[2][0])
	}
	if op := walk(t, m[8][0].([]byte)); op[2][0].(uint64) != OpsetLevel || op[1] != nil {
		t.Errorf("opset_import %v, want default domain version 13", op)
	}
	g := walk(t, m[7][0].([]byte))
	var ops []string
	for _, n := range g[1] {
		ops = append(ops, string(walk(t, n.([]byte))[4][0].([]byte)))
	}
	if got := strings.Join(ops, ","); got != "Mul,Gemm,Relu,Gemm,Softmax,ArgMax" {
		t.Errorf("nodes %s", got)
	}
	if len(g[5]) != 5 || len(g[11]) != 1 || len(g[12]) != 2 {
		t.Fatalf("%d initializers, %d inputs, %d outputs; want 5, 1, 2", len(g[5]), len(g[11]), len(g[12]))
	}
	w1 := walk(t, g[5][1].([]byte))
	if string(w1[8][0].([]byte)) != "W1" || len(w1[9][0].([]byte)) != 4*Pixels*3 {
		t.Errorf("W1 initializer: name %q, %d raw bytes", w1[8][0], len(w1[9][0].([]byte)))
	}
	if math.Float32frombits(binary.LittleEndian.Uint32(w1[9][0].([]byte))) != w.W1[0] {
		t.Error("W1 raw data does not start with W1[0]")
	}
	in := walk(t, g[11][0].([]byte))
	if string(in[1][0].([]byte)) != InputName {
		t.Errorf("input %q", in[1][0])
	}
	tt := walk(t, walk(t, in[2][0].([]byte))[1][0].([]byte))
	dims := walk(t, tt[2][0].([]byte))[1]
	if tt[1][0].(uint64) != onnxFloat || len(dims) != 2 ||
		string(walk(t, dims[0].([]byte))[2][0].([]byte)) != "batch" || walk(t, dims[1].([]byte))[1][0].(uint64) != Pixels {
		t.Errorf("input type: elem %v dims %d", tt[1], len(dims))
	}
}
