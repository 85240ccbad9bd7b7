package scoring

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

var twoInputs = Signature{
	Inputs: []TensorSpec{
		{Name: "a", DataType: Float32, Shape: []int64{Dynamic, 2}},
		{Name: "b", DataType: Int64, Shape: []int64{Dynamic}},
	},
	Outputs: []TensorSpec{{Name: "y", DataType: Float32, Shape: []int64{Dynamic}}},
}

func TestDecodeScore(t *testing.T) {
	one := Signature{Inputs: twoInputs.Inputs[:1], Outputs: twoInputs.Outputs}
	tests := []struct {
		name string
		sig  Signature
		body string
		want []Tensor
		err  string
	}{
		{"single input batch", one, `{"data": [[1, 2], [3, 4]]}`, []Tensor{{Name: "a", DataType: Float32, Shape: []int64{2, 2}, Data: []float32{1, 2, 3, 4}}}, ""},
		{"single example", one, `{"data": [1, 2]}`, []Tensor{{Name: "a", DataType: Float32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}, ""},
		{"named under data", twoInputs, `{"data": {"b": [7], "a": [[1, 2]]}}`, []Tensor{
			{Name: "b", DataType: Int64, Shape: []int64{1}, Data: []int64{7}},
			{Name: "a", DataType: Float32, Shape: []int64{1, 2}, Data: []float32{1, 2}},
		}, ""},
		{"named at top", twoInputs, `{"a": [[1, 2]], "b": [7]}`, []Tensor{
			{Name: "a", DataType: Float32, Shape: []int64{1, 2}, Data: []float32{1, 2}},
			{Name: "b", DataType: Int64, Shape: []int64{1}, Data: []int64{7}},
		}, ""},
		{"data for two inputs", twoInputs, `{"data": [[1, 2]]}`, nil, `the model has 2 inputs`},
		{"unknown", one, `{"x": [1]}`, nil, `"x": invalid input: unknown input`},
		{"ragged", one, `{"data": [[1, 2], [3]]}`, nil, `not rectangular`},
		{"wrong type", twoInputs, `{"a": [[1, 2]], "b": [1.5]}`, nil, `input "b": invalid input: json at offset 25: 1.5 is not an INT64`},
		{"not an object", one, `[1, 2]`, nil, `want '{'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeScore([]byte(tc.body), tc.sig)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want ErrInvalidInput containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzDecodeScore(f *testing.F) {
	f.Add([]byte(`{"data": [[1, 2], [3, 4]]}`))
	f.Add([]byte(`{"data": {"b": [7], "a": [[1, 2]]}}`))
	f.Add([]byte(`{"a": [[1, "NaN"]], "b": []}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeScore(body, twoInputs)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, x := range in {
			if numElements(x.Shape) != x.Len() {
				t.Fatalf("input %q: %d elements for shape %v", x.Name, x.Len(), x.Shape)
			}
		}
	})
}
