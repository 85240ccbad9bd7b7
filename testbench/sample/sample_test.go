package sample

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/ortlib"
)

// readRows reads CSV rows of 64 pixels and a label.
func readRows(t *testing.T, b []byte) (pixels []float32, labels []int64) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), ",")
		if len(cols) != 65 {
			t.Fatalf("line %d: %d columns, want 65", line, len(cols))
		}
		for i, c := range cols {
			v, err := strconv.ParseFloat(c, 32)
			if err != nil {
				t.Fatalf("line %d column %d: %v", line, i+1, err)
			}
			if i < 64 {
				pixels = append(pixels, float32(v))
			} else {
				labels = append(labels, int64(v))
			}
		}
	}
	return pixels, labels
}

func TestSampleTrainingProgram(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run the sample: %v", err)
	}
	dir := t.TempDir()
	if err := CopyProgram(dir); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", ".")
	cmd.Dir = dir
	// Parameters reach the program the way `run submit --param` passes them.
	cmd.Env = append(os.Environ(), "ATELIER_PARAM_EPOCHS=10", "ATELIER_PARAM_HIDDEN=24", "GOWORK=off", "GOFLAGS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run . failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"::param name=epochs value=10\n", "::param name=hidden value=24\n", "::param name=lr value=0.05\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "::metric name=accuracy "); n != 10 {
		t.Errorf("%d held-out accuracy lines, want one per epoch (10)", n)
	}
	m := regexp.MustCompile(`(?m)^::metric name=test_accuracy value=(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no test_accuracy metric in:\n%s", out)
	}
	printed, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}

	// The held-out rows are exactly the data rows whose index is a multiple of 5.
	heldout, err := os.ReadFile(filepath.Join(dir, "outputs", "heldout.csv"))
	if err != nil {
		t.Fatal(err)
	}
	pixels, labels := readRows(t, heldout)
	gz, err := os.ReadFile(filepath.Join("train", "data", "digits.csv.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	if _, err := all.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	allPixels, allLabels := readRows(t, all.Bytes())
	if len(allLabels) != 1797 || len(labels) != 360 {
		t.Fatalf("%d data rows and %d held-out rows, want 1797 and 360", len(allLabels), len(labels))
	}
	for i := range labels {
		if labels[i] != allLabels[5*i] || !slicesEqual(pixels[64*i:64*i+64], allPixels[5*64*i:5*64*i+64]) {
			t.Fatalf("held-out row %d is not data row %d", i, 5*i)
		}
	}

	modelBytes, err := os.ReadFile(filepath.Join(dir, "outputs", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("signature", func(t *testing.T) { checkSignature(t, modelBytes) })

	// Score the held-out rows with real ONNX Runtime.
	if _, err := ortlib.Init(""); err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(modelBytes, []string{"pixels"}, []string{"probabilities", "label"}, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime refused model.onnx: %v", err)
	}
	defer sess.Destroy()
	x, err := ort.NewTensor(ort.NewShape(int64(len(labels)), 64), pixels)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Destroy()
	outs := []ort.Value{nil, nil}
	if err := sess.Run([]ort.Value{x}, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	defer outs[1].Destroy()
	probs := outs[0].(*ort.Tensor[float32])
	pred := outs[1].(*ort.Tensor[int64])
	if s := probs.GetShape(); len(s) != 2 || s[0] != 360 || s[1] != 10 {
		t.Fatalf("probabilities shape %v, want [360 10]", s)
	}
	if s := pred.GetShape(); len(s) != 1 || s[0] != 360 {
		t.Fatalf("label shape %v, want [360]", s)
	}
	correct := 0
	for i, l := range pred.GetData() {
		row := probs.GetData()[10*i : 10*i+10]
		sum, best := float32(0), 0
		for k, p := range row {
			sum += p
			if p > row[best] {
				best = k
			}
		}
		if math.Abs(float64(sum)-1) > 1e-4 || int64(best) != l {
			t.Fatalf("row %d: probabilities %v (sum %g) disagree with label %d", i, row, sum, l)
		}
		if l == labels[i] {
			correct++
		}
	}
	acc := float64(correct) / float64(len(labels))
	t.Logf("ONNX Runtime held-out accuracy %.4f (%d/%d), trainer printed %v", acc, correct, len(labels), printed)
	if acc < 0.9 {
		t.Errorf("held-out accuracy %g, want >= 0.9", acc)
	}
	if math.Abs(acc-printed) > 1e-6 {
		t.Errorf("ONNX Runtime accuracy %g differs from the trainer's test_accuracy %g", acc, printed)
	}
}

func checkSignature(t *testing.T, b []byte) {
	m, err := onnx.Decode(b)
	if err != nil {
		t.Fatalf("internal/onnx cannot decode model.onnx: %v", err)
	}
	if m.IRVersion != 8 || m.Opset() != 13 || m.ProducerName != "atelier-sample-train" {
		t.Errorf("ir_version %d opset %d producer %q, want 8, 13, atelier-sample-train", m.IRVersion, m.Opset(), m.ProducerName)
	}
	sig := m.Signature()
	type want struct {
		name string
		elem onnx.DataType
		dims []int64 // -1 for the dynamic batch dimension
	}
	check := func(kind string, got []onnx.ValueInfo, wants []want) {
		if len(got) != len(wants) {
			t.Fatalf("%d %ss, want %d", len(got), kind, len(wants))
		}
		for i, w := range wants {
			g := got[i]
			if g.Name != w.name || g.ElemType != w.elem || !g.HasShape || len(g.Shape) != len(w.dims) {
				t.Errorf("%s %d = %+v, want %s %s with %d dims", kind, i, g, w.name, w.elem, len(w.dims))
				continue
			}
			for j, d := range w.dims {
				if d < 0 {
					if !g.Shape[j].Dynamic() || g.Shape[j].Param != "batch" {
						t.Errorf("%s %s dim %d = %+v, want dynamic \"batch\"", kind, w.name, j, g.Shape[j])
					}
				} else if g.Shape[j].Value != d || g.Shape[j].Dynamic() {
					t.Errorf("%s %s dim %d = %+v, want %d", kind, w.name, j, g.Shape[j], d)
				}
			}
		}
	}
	check("input", sig.Inputs, []want{{"pixels", onnx.Float, []int64{-1, 64}}})
	check("output", sig.Outputs, []want{{"probabilities", onnx.Float, []int64{-1, 10}}, {"label", onnx.Int64, []int64{-1}}})
	if _, err := m.Encode(); err != nil {
		t.Errorf("re-encode: %v", err)
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
