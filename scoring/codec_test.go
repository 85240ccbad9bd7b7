package scoring

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeInferRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Tensor
		outs []string
		id   string
	}{
		{
			name: "flat fp32",
			body: `{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2.5,-3e2,4]}]}`,
			want: []Tensor{{Name: "x", DataType: Float32, Shape: []int64{2, 2}, Data: []float32{1, 2.5, -300, 4}}},
			id:   "r1",
		},
		{
			name: "nested int64 with data before datatype and parameters",
			body: ` { "inputs" : [ { "data" : [[1,2,3],[4,5,6]], "parameters":{"a":[1,{"b":null}]}, "name":"ids", "shape":[2,3], "datatype":"INT64" } ], "outputs":[{"name":"y"}], "parameters":{} } `,
			want: []Tensor{{Name: "ids", DataType: Int64, Shape: []int64{2, 3}, Data: []int64{1, 2, 3, 4, 5, 6}}},
			outs: []string{"y"},
		},
		{
			name: "bool, uint8, int8, int32, fp64",
			body: `{"inputs":[{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]},` +
				`{"name":"u","shape":[1],"datatype":"UINT8","data":[255]},` +
				`{"name":"i","shape":[1],"datatype":"INT8","data":[-128]},` +
				`{"name":"j","shape":[1],"datatype":"INT32","data":[2147483647]},` +
				`{"name":"d","shape":[3],"datatype":"FP64","data":[0.1,"NaN","-Infinity"]}]}`,
			want: []Tensor{
				{Name: "b", DataType: Bool, Shape: []int64{2}, Data: []bool{true, false}},
				{Name: "u", DataType: Uint8, Shape: []int64{1}, Data: []uint8{255}},
				{Name: "i", DataType: Int8, Shape: []int64{1}, Data: []int8{-128}},
				{Name: "j", DataType: Int32, Shape: []int64{1}, Data: []int32{2147483647}},
				{Name: "d", DataType: Float64, Shape: []int64{3}, Data: []float64{0.1, math.NaN(), math.Inf(-1)}},
			},
		},
		{
			name: "scalar",
			body: `{"inputs":[{"name":"s","shape":[],"datatype":"INT32","data":7}]}`,
			want: []Tensor{{Name: "s", DataType: Int32, Shape: []int64{}, Data: []int32{7}}},
		},
		{
			name: "empty tensor",
			body: `{"inputs":[{"name":"e","shape":[0,3],"datatype":"FP32","data":[]}]}`,
			want: []Tensor{{Name: "e", DataType: Float32, Shape: []int64{0, 3}, Data: []float32{}}},
		},
		{
			name: "escaped name",
			body: `{"id":"a\"b\u00e9","inputs":[{"name":"x\ty","shape":[1],"datatype":"FP32","data":[1]}]}`,
			want: []Tensor{{Name: "x\ty", DataType: Float32, Shape: []int64{1}, Data: []float32{1}}},
			id:   "a\"bé",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeInferRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if req.ID != tc.id {
				t.Errorf("id %q, want %q", req.ID, tc.id)
			}
			if !reflect.DeepEqual(req.Outputs, tc.outs) {
				t.Errorf("outputs %v, want %v", req.Outputs, tc.outs)
			}
			if len(req.Inputs) != len(tc.want) {
				t.Fatalf("%d inputs, want %d", len(req.Inputs), len(tc.want))
			}
			for i, w := range tc.want {
				g := req.Inputs[i]
				if g.Name != w.Name || g.DataType != w.DataType || !reflect.DeepEqual(g.Shape, w.Shape) || !sameData(g.Data, w.Data) {
					t.Errorf("input %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// sameData compares data slices, treating NaN as equal to NaN.
func sameData(a, b any) bool {
	fa, ok1 := a.([]float64)
	fb, ok2 := b.([]float64)
	if ok1 && ok2 {
		if len(fa) != len(fb) {
			return false
		}
		for i := range fa {
			if fa[i] != fb[i] && !(math.IsNaN(fa[i]) && math.IsNaN(fb[i])) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestDecodeInferRequestErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not json", `{"inputs":[`, "unexpected end"},
		{"trailing", `{"inputs":[]} x`, "after the top-level value"},
		{"no inputs", `{}`, `no "inputs"`},
		{"no name", `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`, `input #0: invalid input: no "name"`},
		{"no datatype", `{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`, `no "datatype"`},
		{"no shape", `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, `no "shape"`},
		{"no data", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`, `no "data"`},
		{"bad datatype", `{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}`, `datatype "FLOAT"`},
		{"bytes unsupported", `{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}`, `unsupported`},
		{"count", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`, `3 data elements, shape [2,2] needs 4`},
		{"negative dim", `{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}`, `negative`},
		{"ragged", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3]]}]}`, `not rectangular`},
		{"mixed depth", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],3]}]}`, `not rectangular`},
		{"nested mismatch", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1],[2],[3],[4]]}]}`, `nested data has shape [4,1]`},
		{"int overflow", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[128]}]}`, `128 is not an INT8`},
		{"fraction in int", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}`, `not an INT32`},
		{"negative uint", `{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[-1]}]}`, `not a UINT8`},
		{"fp32 overflow", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]}`, `out of range for FP32`},
		{"string in fp", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["1"]}]}`, `string "1" where a number`},
		{"bool as number", `{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]}`, `want true or false`},
		{"leading zero", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[01]}]}`, `leading zero`},
		{"binary", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`, `binary`},
		{"output without name", `{"inputs":[],"outputs":[{}]}`, `no name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeInferRequest([]byte(tc.body))
			if err == nil {
				t.Fatalf("decoded %s, want error containing %q", tc.body, tc.want)
			}
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v wraps neither ErrInvalidInput nor ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestAppendInferResponseRoundTrip(t *testing.T) {
	outs := []Tensor{
		{Name: "y", DataType: Float32, Shape: []int64{2, 2}, Data: []float32{0.1, float32(math.NaN()), float32(math.Inf(1)), -2}},
		{Name: "k\"", DataType: Int64, Shape: []int64{1}, Data: []int64{-5}},
		{Name: "b", DataType: Bool, Shape: []int64{}, Data: []bool{true}},
	}
	b := AppendInferResponse(nil, "m", "1", "id\n", outs)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	var resp struct {
		ModelName string `json:"model_name"`
		ID        string `json:"id"`
		Outputs   []struct {
			Name     string
			Datatype string
			Shape    []int64
			Data     json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "m" || resp.ID != "id\n" || len(resp.Outputs) != 3 || resp.Outputs[1].Name != "k\"" {
		t.Fatalf("response %s", b)
	}
	if got := string(resp.Outputs[0].Data); got != `[0.1,"NaN","Infinity",-2]` {
		t.Errorf("fp32 data %s", got)
	}
	// The decoder reads what the encoder writes, bit for bit.
	req, err := DecodeInferRequest([]byte(`{"inputs":[{"name":"y","datatype":"FP32","shape":[2,2],"data":` + string(resp.Outputs[0].Data) + `}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := req.Inputs[0].Data.([]float32)
	want := outs[0].Data.([]float32)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Errorf("element %d: %v, want %v", i, got[i], want[i])
		}
	}
}

func TestAppendNested(t *testing.T) {
	b := appendNested(nil, []int32{1, 2, 3, 4, 5, 6}, []int64{2, 3})
	if string(b) != "[[1,2,3],[4,5,6]]" {
		t.Errorf("got %s", b)
	}
	if b := appendNested(nil, []float32{1.5}, []int64{}); string(b) != "1.5" {
		t.Errorf("scalar: got %s", b)
	}
}

func FuzzDecodeInferRequest(f *testing.F) {
	f.Add([]byte(`{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2.5,-3e2,4]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT64","data":[[1,2],[3,4]]}],"outputs":[{"name":"y"}]}`))
	f.Add([]byte(`{"inputs":[{"name":"b","shape":[],"datatype":"BOOL","data":true}]}`))
	f.Add([]byte(`{"inputs":[{"name":"e","shape":[0,3],"datatype":"UINT8","data":[[],[]]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"d","shape":[1],"datatype":"FP64","data":["NaN"],"parameters":{"a":[{}]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeInferRequest(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is not classified", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, in := range req.Inputs {
			if n := numElements(in.Shape); n != in.Len() {
				t.Fatalf("input %q: %d elements for shape %v", in.Name, in.Len(), in.Shape)
			}
			if DataTypeOf(in.Data) != in.DataType {
				t.Fatalf("input %q: data %T for %s", in.Name, in.Data, in.DataType)
			}
		}
	})
}
