package compiler_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func info() fpga.Info {
	t := isa.DefaultTiming()
	return fpga.Info{Name: "test", Firmware: "fw1", Rows: t.Rows, Cols: t.Cols, ClockHz: 250e6, DRAMBytes: 1 << 28, SPADBytes: 1 << 20, ACCWords: 1 << 16,
		DMABytesPerCycle: t.DMABytesPerCycle, DMASetupCycles: t.DMASetupCycles, VectorLanes: t.VectorLanes, GatherBytes: t.GatherBytes}
}

func calib(n, k int) [][]float32 {
	var out [][]float32
	for i := 0; i < n; i++ {
		s := make([]float32, k)
		for j := range s {
			s[j] = float32((i*7+j*3)%11) - 5
		}
		out = append(out, s)
	}
	return out
}

// midSoftmax is Gemm → Softmax → Gemm: only the first Gemm maps.
func midSoftmax(t *testing.T, firstOp string) []byte {
	m := onnxtest.MLPModel(6, []int{5}, 3, 1)
	g := m.Graph
	for i := range g.Nodes {
		if g.Nodes[i].OpType == "Relu" {
			g.Nodes[i].OpType = firstOp
		}
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPartition(t *testing.T) {
	a, err := compiler.Compile(midSoftmax(t, "Softmax"), calib(8, 6), info(), compiler.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if a.Image == nil || a.Full() || a.Suffix == nil || a.Plan.Output != "gemm0" || len(a.DeviceOps) != 1 {
		t.Fatalf("partition: image=%v full=%v cut=%q ops=%v", a.Image != nil, a.Full(), a.Plan.Output, a.DeviceOps)
	}
	un := strings.Join(a.Unsupported, "\n")
	if !strings.Contains(un, `Softmax (node "relu0")`) || !strings.Contains(un, `Gemm (node "output"): after the device prefix`) {
		t.Errorf("unsupported list:\n%s", un)
	}
	sm, err := onnx.Decode(a.Suffix)
	if err != nil {
		t.Fatalf("suffix is not ONNX: %v", err)
	}
	sig := sm.Signature()
	if len(sig.Inputs) != 1 || sig.Inputs[0].Name != "gemm0" || len(sm.Graph.Nodes) != 2 || sig.Outputs[0].Name != "output" {
		t.Errorf("suffix signature %+v with %d nodes", sig, len(sm.Graph.Nodes))
	}
	if _, err := compiler.Compile(midSoftmax(t, "Softmax"), calib(8, 6), info(), compiler.Options{RequireFull: true}, quiet()); !errors.Is(err, compiler.ErrPartial) || !strings.Contains(err.Error(), "Softmax") {
		t.Errorf("RequireFull: %v, want ErrPartial naming Softmax", err)
	}

	// Nothing maps when the first op is unsupported: the whole graph is the suffix.
	m := onnxtest.MLPModel(6, []int{5}, 3, 1)
	m.Graph.Nodes = append([]onnx.Node{{Name: "sig", OpType: "Sigmoid", Inputs: []string{"input"}, Outputs: []string{"s"}}}, m.Graph.Nodes...)
	m.Graph.Nodes[1].Inputs[0] = "s"
	b, _ := m.Encode()
	a, err = compiler.Compile(b, calib(8, 6), info(), compiler.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if a.Image != nil || a.Suffix == nil || !strings.Contains(strings.Join(a.Unsupported, ";"), `Sigmoid (node "sig")`) {
		t.Errorf("all-CPU model: image=%v unsupported=%v", a.Image != nil, a.Unsupported)
	}
}

func TestCompileIsDeterministicAndCached(t *testing.T) {
	model := onnxtest.MLP(10, []int{40}, 4, 2)
	dir := t.TempDir()
	opts := compiler.Options{CacheDir: dir}
	a1, err := compiler.Compile(model, calib(16, 10), info(), opts, quiet())
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.fpgac.json"))
	if len(files) != 1 {
		t.Fatalf("%d cache files, want 1", len(files))
	}
	// Mark the cached artifact: a hit returns the marked copy.
	b, _ := os.ReadFile(files[0])
	b = bytes.Replace(b, []byte(`"DeviceOps":[`), []byte(`"DeviceOps":["from-cache",`), 1)
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	a2, err := compiler.Compile(model, calib(16, 10), info(), opts, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if a2.DeviceOps[0] != "from-cache" || !bytes.Equal(a1.Image, a2.Image) {
		t.Fatalf("second compile was not a cache hit: %v", a2.DeviceOps)
	}
	// Another device, another key; and without the cache the output is identical.
	other := info()
	other.Firmware = "fw2"
	if _, err := compiler.Compile(model, calib(16, 10), other, opts, quiet()); err != nil {
		t.Fatal(err)
	}
	if files, _ = filepath.Glob(filepath.Join(dir, "*.fpgac.json")); len(files) != 2 {
		t.Fatalf("%d cache files after compiling for another device, want 2", len(files))
	}
	a3, err := compiler.Compile(model, calib(16, 10), info(), compiler.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a1.Image, a3.Image) {
		t.Fatal("compiling twice gave different programs")
	}
	if _, err := isa.Decode(a1.Image); err != nil {
		t.Fatalf("program does not decode: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	if _, err := compiler.Compile([]byte("not onnx"), calib(1, 1), info(), compiler.Options{}, quiet()); !errors.Is(err, compiler.ErrUnsupportedModel) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := compiler.Compile(onnxtest.MLP(10, nil, 2, 1), calib(3, 9), info(), compiler.Options{}, quiet()); !errors.Is(err, compiler.ErrCalibration) || !strings.Contains(err.Error(), "sample 1 has 9 values") {
		t.Errorf("wrong calibration width: %v", err)
	}
	if _, err := compiler.Compile(onnxtest.MLP(10, nil, 2, 1), nil, info(), compiler.Options{}, quiet()); !errors.Is(err, compiler.ErrCalibration) {
		t.Errorf("no calibration: %v", err)
	}
	small := info()
	small.SPADBytes = 64
	a, err := compiler.Compile(onnxtest.MLP(10, []int{200}, 2, 1), calib(4, 10), small, compiler.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if a.Image != nil || !strings.Contains(strings.Join(a.Unsupported, ";"), "scratchpad") {
		t.Errorf("model too big for the scratchpad: image=%v unsupported=%v", a.Image != nil, a.Unsupported)
	}
}

func TestBatchShrinksToFit(t *testing.T) {
	// act 40 bytes per sample, weights 400 bytes: 2·B·40 + 400 <= 1200 needs B <= 10.
	small := info()
	small.SPADBytes = 1200
	a, err := compiler.Compile(onnxtest.MLP(10, []int{40}, 4, 1), calib(4, 10), small, compiler.Options{Batch: 32}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if a.Plan == nil || a.Plan.Batch != 8 || !a.Full() {
		t.Fatalf("plan %+v, want batch 8 (32 → 16 → 8) on the whole model", a.Plan)
	}
	p, err := isa.Decode(a.Image)
	if err != nil {
		t.Fatal(err)
	}
	if p.SPADBytes > 1200 || p.InStride != 8*10 || p.OutStride != 8*4*4 {
		t.Fatalf("program spad %d in stride %d out stride %d", p.SPADBytes, p.InStride, p.OutStride)
	}
}

func TestReadCalibration(t *testing.T) {
	got, err := compiler.ReadCalibration(strings.NewReader("1,2,3,7\n# comment\n\n4,5,6,8\n"), 3, 0)
	if err != nil || len(got) != 2 || got[1][2] != 6 {
		t.Fatalf("csv with a label column: %v, %v", got, err)
	}
	if got, _ := compiler.ReadCalibration(strings.NewReader("1,2,3\n4,5,6\n"), 3, 1); len(got) != 1 {
		t.Errorf("max 1: %d samples", len(got))
	}
	tb, err := onnx.EncodeTensor(&onnx.Tensor{Name: "x", DataType: onnx.Float, Dims: []int64{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := compiler.ReadCalibration(bytes.NewReader(tb), 3, 0); err != nil || len(got) != 2 || got[1][0] != 4 {
		t.Errorf("tensor: %v, %v", got, err)
	}
	for name, in := range map[string]string{"short line": "1,2\n", "not a number": "1,x,3\n", "empty": "\n"} {
		if _, err := compiler.ReadCalibration(strings.NewReader(in), 3, 0); !errors.Is(err, compiler.ErrCalibration) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzReadCalibration(f *testing.F) {
	f.Add([]byte("1,2,3\n4,5,6,7\n"), 3)
	tb, _ := onnx.EncodeTensor(&onnx.Tensor{Name: "x", DataType: onnx.Float, Dims: []int64{1, 2}, Data: []float32{1, 2}})
	f.Add(tb, 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 1 || n > 1000 {
			return
		}
		got, err := compiler.ReadCalibration(bytes.NewReader(b), n, 0)
		if err != nil {
			return
		}
		for i, s := range got {
			if len(s) != n {
				t.Fatalf("sample %d has %d values, want %d", i, len(s), n)
			}
		}
	})
}

func TestDuplicateNodeNames(t *testing.T) {
	m := onnxtest.MLPModel(6, []int{5}, 3, 1)
	g := m.Graph
	g.Nodes = append(g.Nodes, onnx.Node{OpType: "Softmax", Inputs: []string{"output"}, Outputs: []string{"probs"}})
	for i := range g.Nodes {
		g.Nodes[i].Name = "same"
	}
	g.Outputs[0].Name = "probs"
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	a, err := compiler.Compile(b, calib(8, 6), info(), compiler.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	sm, err := onnx.Decode(a.Suffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(sm.Graph.Nodes) != 1 || sm.Graph.Nodes[0].OpType != "Softmax" || a.Plan.Output != "output" {
		t.Fatalf("suffix nodes %+v, cut %q: want just the Softmax after the device's Gemm-Relu-Gemm", sm.Graph.Nodes, a.Plan.Output)
	}
}
