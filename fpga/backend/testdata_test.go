package backend_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/scoring"
)

const testdataRoot = "/usr/share/libonnx-testdata/data"

// Tolerance for the ONNX backend-test cases: the int8 pipeline's maximum
// absolute error must stay within this fraction of the expected output's
// largest magnitude (docs/fpga.md explains the budget).
const testdataTolerance = 0.05

// bindConstants turns every graph input but the first into an initializer
// holding the test's value for it: the device compiles constant weights,
// and the ONNX node tests pass weights as inputs.
func bindConstants(m *onnx.Model, inputs []*onnx.Tensor) bool {
	sig := m.Signature()
	if len(sig.Inputs) != len(inputs) || len(inputs) == 0 {
		return false
	}
	keep := sig.Inputs[0].Name
	var ins []onnx.ValueInfo
	for _, vi := range m.Graph.Inputs {
		bound := false
		for i, s := range sig.Inputs {
			if i > 0 && s.Name == vi.Name {
				t := *inputs[i]
				t.Name = vi.Name
				m.Graph.Initializers = append(m.Graph.Initializers, &t)
				bound = true
			}
		}
		if !bound || vi.Name == keep {
			ins = append(ins, vi)
		}
	}
	m.Graph.Inputs = ins
	return true
}

func TestONNXBackendTestdata(t *testing.T) {
	var dirs []string
	for _, suite := range []string{"node", "pytorch-converted", "pytorch-operator", "simple"} {
		ds, err := filepath.Glob(filepath.Join(testdataRoot, suite, "test_*"))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, ds...)
	}
	if len(dirs) < 100 {
		t.Fatalf("found %d test cases under %s; is libonnx-testdata installed?", len(dirs), testdataRoot)
	}
	sort.Strings(dirs)
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	ran, passed := 0, 0
	worst, worstCase := 0.0, ""
	ops := map[string]int{}
	for _, dir := range dirs {
		name := filepath.Base(filepath.Dir(dir)) + "/" + filepath.Base(dir)
		mb, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		m, err := onnx.Decode(mb)
		if err != nil {
			continue
		}
		var inputs []*onnx.Tensor
		for i := 0; ; i++ {
			b, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				break
			}
			tn, err := onnx.DecodeTensor(b)
			if err != nil {
				inputs = nil
				break
			}
			inputs = append(inputs, tn)
		}
		ob, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", "output_0.pb"))
		if err != nil || len(m.Signature().Outputs) != 1 || !bindConstants(m, inputs) {
			continue
		}
		wantT, err := onnx.DecodeTensor(ob)
		if err != nil {
			continue
		}
		want, ok1 := wantT.Data.([]float32)
		x, ok2 := inputs[0].Data.([]float32)
		if !ok1 || !ok2 || len(inputs[0].Dims) < 2 || inputs[0].Dims[0] <= 0 || len(x) == 0 {
			continue
		}
		model, err := m.Encode()
		if err != nil {
			t.Fatalf("%s: re-encode: %v", name, err)
		}
		per := len(x) / int(inputs[0].Dims[0])
		var calib [][]float32
		for i := 0; i+per <= len(x); i += per {
			calib = append(calib, x[i:i+per])
		}
		r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{RequireFull: true}}, quiet())
		if errors.Is(err, compiler.ErrPartial) || errors.Is(err, compiler.ErrUnsupportedModel) {
			continue
		}
		if err != nil {
			t.Errorf("%s: open: %v", name, err)
			continue
		}
		ran++
		in := []scoring.Tensor{{Name: m.Signature().Inputs[0].Name, DataType: scoring.Float32, Shape: inputs[0].Dims, Data: x}}
		out, err := r.Run(ctx, in)
		r.Close()
		if err != nil {
			t.Errorf("%s: run: %v", name, err)
			continue
		}
		got := out[0].Data.([]float32)
		if len(got) != len(want) {
			t.Errorf("%s: %d outputs, want %d", name, len(got), len(want))
			continue
		}
		var maxErr, maxRef float64
		for i := range want {
			maxErr = math.Max(maxErr, math.Abs(float64(got[i]-want[i])))
			maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
		}
		rel := maxErr / math.Max(maxRef, 1e-6)
		if rel > worst {
			worst, worstCase = rel, name
		}
		for _, n := range m.Graph.Nodes {
			ops[n.OpType]++
		}
		if rel <= testdataTolerance {
			passed++
		} else {
			t.Errorf("%s: max abs error %.4g is %.2f%% of the output range %.4g (tolerance %.0f%%)", name, maxErr, 100*rel, maxRef, 100*testdataTolerance)
		}
		t.Logf("%-55s rel error %.4f  (%s)", name, rel, strings.Join(r.Artifact().DeviceOps, "; "))
	}
	t.Logf("libonnx-testdata: ran %d fully supported cases, passed %d, worst relative error %.4f (%s); ops covered: %v", ran, passed, worst, worstCase, ops)
	if ran < 20 {
		t.Errorf("only %d cases ran on the device, want at least 20", ran)
	}
}
