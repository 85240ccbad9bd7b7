package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/atelier-ml/atelier/internal/ortlib"
)

// runORT runs model in ONNX Runtime on inputs and renders every output
// (shape and data) as text, so NaNs compare equal.
func runORT(model []byte, sig Signature, inputs []*Tensor) ([]string, error) {
	var inNames, outNames []string
	for _, v := range sig.Inputs {
		inNames = append(inNames, v.Name)
	}
	for _, v := range sig.Outputs {
		outNames = append(outNames, v.Name)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, nil)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	defer sess.Destroy()
	ins := make([]ort.Value, len(inputs))
	for i, t := range inputs {
		v, err := ort.NewCustomDataTensor(ort.NewShape(t.Dims...), appendRaw(nil, t.Data), ort.TensorElementDataType(t.DataType))
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		defer v.Destroy()
		ins[i] = v
	}
	outs := make([]ort.Value, len(outNames))
	if err := sess.Run(ins, outs); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	var got []string
	for _, o := range outs {
		if o == nil {
			continue
		}
		data := reflect.ValueOf(o).MethodByName("GetData")
		if !data.IsValid() {
			got = append(got, fmt.Sprintf("%T", o))
		} else {
			got = append(got, fmt.Sprint(o.GetShape(), data.Call(nil)[0].Interface()))
		}
		o.Destroy()
	}
	return got, nil
}

// TestReencodedModelsRunTheSameInONNXRuntime checks that Decode→Encode
// keeps models runnable and their results unchanged: for every node test
// whose inputs are non-empty numeric tensors and that ONNX Runtime accepts,
// the re-encoded model must load and give byte-identical outputs.
func TestReencodedModelsRunTheSameInONNXRuntime(t *testing.T) {
	if _, err := ortlib.Init(""); err != nil {
		t.Fatal(err)
	}
	dirs := globTestdata(t, "node/*")
	ran, refused := 0, 0
dirs:
	for _, dir := range dirs {
		orig, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(orig)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		sig := m.Signature()
		var inputs []*Tensor
		for i, v := range sig.Inputs {
			if !v.IsTensor() || v.ElemType == String {
				continue dirs
			}
			b, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				continue dirs // optional input left out by the test case
			}
			in, err := DecodeTensor(b)
			if err != nil {
				t.Fatalf("%s input %d: %v", dir, i, err)
			}
			if n, _ := NumElements(in.Dims); n == 0 {
				continue dirs
			}
			inputs = append(inputs, in)
		}
		if len(inputs) == 0 {
			continue // onnxruntime_go needs at least one input
		}
		for _, v := range sig.Outputs {
			if !v.IsTensor() {
				continue dirs
			}
		}
		want, err := runORT(orig, sig, inputs)
		if err != nil {
			refused++ // training ops, layout=1 RNNs, scalar outputs onnxruntime_go cannot return
			continue
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("%s: encode: %v", dir, err)
		}
		got, err := runORT(enc, sig, inputs)
		name := filepath.Base(dir)
		if err != nil {
			t.Errorf("%s: ONNX Runtime runs the original but not the re-encoded model: %v", name, err)
			continue
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: re-encoded model gives different outputs", name)
		}
		ran++
	}
	t.Logf("%d models compared, %d not runnable as given", ran, refused)
	if ran < 500 {
		t.Errorf("only %d models compared, want >= 500", ran)
	}
}
