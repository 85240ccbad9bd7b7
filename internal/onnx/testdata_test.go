package onnx

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// libonnxTestdata is where Debian's libonnx-testdata package (installed by
// the setup step) keeps the ONNX backend test suite.
const libonnxTestdata = "/usr/share/libonnx-testdata/data"

func globTestdata(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(libonnxTestdata, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s under %s (the setup step installs libonnx-testdata)", pattern, libonnxTestdata)
	}
	return files
}

// TestTestdataModels decodes every model of the ONNX backend test suite and
// checks that Decode→Encode→Decode gives the same model.
func TestTestdataModels(t *testing.T) {
	var files []string
	for _, p := range []string{"*/*/model.onnx", "*/*/*/model.onnx"} {
		m, _ := filepath.Glob(filepath.Join(libonnxTestdata, p))
		files = append(files, m...)
	}
	if len(files) < 1000 {
		t.Fatalf("found %d model.onnx files under %s, want the full suite (>= 1000)", len(files), libonnxTestdata)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(f, libonnxTestdata+"/")
		m, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		enc, err := m.Encode()
		if err != nil {
			t.Errorf("%s: encode: %v", name, err)
			continue
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Errorf("%s: decode re-encoded: %v", name, err)
			continue
		}
		// Compare re-encodings rather than structs: NaN != NaN.
		if enc2, err := m2.Encode(); err != nil || !bytes.Equal(enc, enc2) {
			t.Errorf("%s: Decode→Encode→Decode changed the model (err %v)", name, err)
		}
	}
	t.Logf("%d models", len(files))
}

// TestTestdataTensors decodes every tensor file of the node tests whose
// model declares a tensor for it, and checks that Decode→Encode→Decode is
// stable. Files for sequence and optional values hold SequenceProto and
// OptionalProto messages, which this package does not decode; the test
// counts them so a change in the suite is noticed.
func TestTestdataTensors(t *testing.T) {
	dirs := globTestdata(t, "node/*/test_data_set_*")
	tensors, others := 0, 0
	for _, dir := range dirs {
		mb, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(mb)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		sig := m.Signature()
		files, _ := filepath.Glob(filepath.Join(dir, "*.pb"))
		for _, f := range files {
			name := strings.TrimPrefix(f, libonnxTestdata+"/")
			base := filepath.Base(f)
			var idx int
			var vis []ValueInfo
			if _, err := fmt.Sscanf(base, "input_%d.pb", &idx); err == nil {
				vis = sig.Inputs
			} else if _, err := fmt.Sscanf(base, "output_%d.pb", &idx); err == nil {
				vis = sig.Outputs
			} else {
				t.Errorf("%s: unexpected file name", name)
				continue
			}
			if idx >= len(vis) {
				t.Errorf("%s: model has only %d such values", name, len(vis))
				continue
			}
			if !vis[idx].IsTensor() {
				others++
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tt, err := DecodeTensor(b)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			tensors++
			// The suite stores BFLOAT16 test values as UINT16 (numpy has
			// no bfloat16); accept exactly that mismatch.
			bf16 := vis[idx].ElemType == BFloat16 && tt.DataType == Uint16
			if tt.DataType != vis[idx].ElemType && !bf16 {
				t.Errorf("%s: data type %s, model says %s", name, tt.DataType, vis[idx].ElemType)
			}
			enc, err := EncodeTensor(tt)
			if err != nil {
				t.Errorf("%s: encode: %v", name, err)
				continue
			}
			t2, err := DecodeTensor(enc)
			if err != nil {
				t.Errorf("%s: decode re-encoded: %v", name, err)
				continue
			}
			if enc2, err := EncodeTensor(t2); err != nil || !bytes.Equal(enc, enc2) {
				t.Errorf("%s: Decode→Encode→Decode changed the tensor (err %v)", name, err)
			}
		}
	}
	if tensors < 2500 || others == 0 {
		t.Errorf("decoded %d tensors and skipped %d non-tensor values; want >= 2500 and some", tensors, others)
	}
	t.Logf("%d tensors, %d sequence/optional values", tensors, others)
}
