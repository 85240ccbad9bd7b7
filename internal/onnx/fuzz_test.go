package onnx_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

const libonnxNode = "/usr/share/libonnx-testdata/data/node"

// addFiles adds up to max files matching pattern to the seed corpus.
func addFiles(f *testing.F, pattern string, max int) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatalf("no seed files match %s", pattern)
	}
	for i, p := range files {
		if i >= max {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes, decodes again, and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(onnxtest.MLP(3, []int{4}, 2, 1))
	f.Add([]byte{})
	f.Add([]byte("not an onnx model"))
	addFiles(f, "testdata/*.onnx", 10)
	addFiles(f, filepath.Join(libonnxNode, "test_[a-c]*/model.onnx"), 40)
	addFiles(f, filepath.Join(libonnxNode, "test_if*/model.onnx"), 5)
	addFiles(f, filepath.Join(libonnxNode, "test_loop*/model.onnx"), 5)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := onnx.Decode(b)
		if err != nil {
			if m != nil {
				t.Fatal("Decode returned a model and an error")
			}
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded model does not encode: %v", err)
		}
		m2, err := onnx.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded model does not decode: %v", err)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode is not stable (err %v)", err)
		}
	})
}

// FuzzDecodeTensor does the same for single tensors.
func FuzzDecodeTensor(f *testing.F) {
	for _, tt := range []*onnx.Tensor{
		{Name: "f", DataType: onnx.Float, Dims: []int64{2}, Data: []float32{1, 2}},
		{Name: "s", DataType: onnx.String, Dims: []int64{1}, Data: []string{"x"}},
		{Name: "b", DataType: onnx.Bool, Dims: []int64{0}, Data: []bool{}},
	} {
		b, err := onnx.EncodeTensor(tt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addFiles(f, filepath.Join(libonnxNode, "test_[a-c]*/test_data_set_0/*.pb"), 60)
	addFiles(f, filepath.Join(libonnxNode, "test_cast_*/test_data_set_0/*.pb"), 40)
	f.Fuzz(func(t *testing.T, b []byte) {
		tt, err := onnx.DecodeTensor(b)
		if err != nil {
			return
		}
		enc, err := onnx.EncodeTensor(tt)
		if err != nil {
			t.Fatalf("decoded tensor does not encode: %v", err)
		}
		t2, err := onnx.DecodeTensor(enc)
		if err != nil {
			t.Fatalf("re-encoded tensor does not decode: %v", err)
		}
		enc2, err := onnx.EncodeTensor(t2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("EncodeTensor is not stable (err %v)", err)
		}
	})
}
