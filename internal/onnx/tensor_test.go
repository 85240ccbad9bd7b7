package onnx

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestTensorRoundTrip(t *testing.T) {
	cases := []*Tensor{
		{Name: "f", DataType: Float, Dims: []int64{2, 2}, Data: []float32{1, -2.5, float32(math.Inf(1)), 0}},
		{Name: "d", DataType: Double, Dims: []int64{3}, Data: []float64{1e300, -1, 0.5}},
		{Name: "i8", DataType: Int8, Dims: []int64{2}, Data: []int8{-128, 127}},
		{Name: "u8", DataType: Uint8, Dims: []int64{2}, Data: []uint8{0, 255}},
		{Name: "i16", DataType: Int16, Dims: []int64{1}, Data: []int16{-300}},
		{Name: "u16", DataType: Uint16, Dims: []int64{1}, Data: []uint16{65535}},
		{Name: "h", DataType: Float16, Dims: []int64{2}, Data: []uint16{0x3c00, 0xc000}},
		{Name: "bf", DataType: BFloat16, Dims: []int64{1}, Data: []uint16{0x3f80}},
		{Name: "i32", DataType: Int32, Dims: []int64{2}, Data: []int32{math.MinInt32, 7}},
		{Name: "u32", DataType: Uint32, Dims: []int64{1}, Data: []uint32{math.MaxUint32}},
		{Name: "i64", DataType: Int64, Dims: []int64{2, 1}, Data: []int64{math.MinInt64, 1}},
		{Name: "u64", DataType: Uint64, Dims: []int64{1}, Data: []uint64{math.MaxUint64}},
		{Name: "b", DataType: Bool, Dims: []int64{3}, Data: []bool{true, false, true}},
		{Name: "s", DataType: String, Dims: []int64{2}, Data: []string{"héllo", ""}},
		{Name: "c64", DataType: Complex64, Dims: []int64{1}, Data: []float32{1, 2}},
		{Name: "scalar", DataType: Float, Dims: []int64{}, Data: []float32{3}},
		{Name: "empty", DataType: Int64, Dims: []int64{0, 3}, Data: []int64{}},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			b, err := EncodeTensor(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeTensor(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, c)
			}
		})
	}
}

// typed builds a TensorProto by hand with the data in a typed field.
func typed(dt DataType, dims []int64, add func([]byte) []byte) []byte {
	var b []byte
	b = appendPackedVarints(b, tensorDims, dims)
	b = appendVarint(b, tensorDataType, uint64(dt))
	b = appendString(b, tensorName, "x")
	return add(b)
}

func TestDecodeTensorTypedFields(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want any
	}{
		{"float_data packed", typed(Float, []int64{2}, func(b []byte) []byte { return appendPackedFloats(b, tensorFloatData, []float32{1, 2}) }), []float32{1, 2}},
		{"float_data unpacked", typed(Float, []int64{2}, func(b []byte) []byte {
			for _, v := range []float32{3, 4} {
				b = protowire.AppendTag(b, tensorFloatData, protowire.Fixed32Type)
				b = protowire.AppendFixed32(b, math.Float32bits(v))
			}
			return b
		}), []float32{3, 4}},
		{"int32_data negative int8", typed(Int8, []int64{2}, func(b []byte) []byte {
			return appendPackedVarints(b, tensorInt32Data, []int64{-5, 5})
		}), []int8{-5, 5}},
		{"int32_data bool", typed(Bool, []int64{2}, func(b []byte) []byte { return appendPackedVarints(b, tensorInt32Data, []int64{1, 0}) }), []bool{true, false}},
		{"int32_data float16", typed(Float16, []int64{1}, func(b []byte) []byte { return appendPackedVarints(b, tensorInt32Data, []int64{0x3c00}) }), []uint16{0x3c00}},
		{"int64_data", typed(Int64, []int64{2}, func(b []byte) []byte { return appendPackedVarints(b, tensorInt64Data, []int64{-1, 1 << 40}) }), []int64{-1, 1 << 40}},
		{"uint64_data uint32", typed(Uint32, []int64{1}, func(b []byte) []byte { return appendPackedVarints(b, tensorUint64Data, []int64{4000000000}) }), []uint32{4000000000}},
		{"double_data", typed(Double, []int64{1}, func(b []byte) []byte {
			b = protowire.AppendTag(b, tensorDoubleData, protowire.Fixed64Type)
			return protowire.AppendFixed64(b, math.Float64bits(2.5))
		}), []float64{2.5}},
		{"string_data", typed(String, []int64{2}, func(b []byte) []byte {
			return appendString(appendString(b, tensorStringData, "a"), tensorStringData, "bc")
		}), []string{"a", "bc"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeTensor(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Data, c.want) {
				t.Fatalf("Data = %#v, want %#v", got.Data, c.want)
			}
		})
	}
}

func TestDecodeTensorErrors(t *testing.T) {
	cases := []struct {
		name   string
		in     []byte
		is     error
		offset int
	}{
		{"too few floats", typed(Float, []int64{3}, func(b []byte) []byte { return appendPackedFloats(b, tensorFloatData, []float32{1, 2}) }), ErrMalformed, -1},
		{"raw too long", typed(Float, []int64{1}, func(b []byte) []byte { return appendBytes(b, tensorRawData, make([]byte, 8)) }), ErrMalformed, -1},
		{"raw not a multiple", typed(Int32, []int64{1}, func(b []byte) []byte { return appendBytes(b, tensorRawData, make([]byte, 3)) }), ErrMalformed, -1},
		{"no data", typed(Float, []int64{2}, func(b []byte) []byte { return b }), ErrMalformed, -1},
		{"two data fields", typed(Float, []int64{1}, func(b []byte) []byte {
			return appendBytes(appendPackedFloats(b, tensorFloatData, []float32{1}), tensorRawData, make([]byte, 4))
		}), ErrMalformed, -1},
		{"wrong typed field", typed(Float, []int64{1}, func(b []byte) []byte { return appendPackedVarints(b, tensorInt64Data, []int64{1}) }), ErrMalformed, -1},
		{"uint8 out of range", typed(Uint8, []int64{1}, func(b []byte) []byte { return appendPackedVarints(b, tensorInt32Data, []int64{256}) }), ErrMalformed, -1},
		{"negative dim", typed(Float, []int64{-1}, func(b []byte) []byte { return b }), ErrMalformed, -1},
		{"overflowing dims", typed(Float, []int64{1 << 40, 1 << 40}, func(b []byte) []byte { return b }), ErrMalformed, -1},
		{"external location", typed(Float, []int64{1}, func(b []byte) []byte { return appendVarint(b, tensorDataLocation, 1) }), ErrExternalData, -1},
		{"external data", typed(Float, []int64{1}, func(b []byte) []byte { return appendBytes(b, tensorExternalData, nil) }), ErrExternalData, -1},
		{"unknown type", typed(DataType(99), []int64{1}, func(b []byte) []byte { return b }), ErrUnsupported, -1},
		{"no data type", appendString(nil, tensorName, "x"), ErrMalformed, 0},
		{"dims as fixed64", []byte{0x09, 1, 2, 3, 4, 5, 6, 7, 8}, ErrMalformed, 0},
		{"truncated", []byte{0x4a, 0x05, 1}, ErrMalformed, 0},
		{"group", []byte{0x0b}, ErrMalformed, 0},
		{"bad second field", append(appendVarint(nil, tensorDataType, 1), 0x12, 0x80), ErrMalformed, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTensor(c.in)
			if !errors.Is(err, c.is) {
				t.Fatalf("err = %v, want %v", err, c.is)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *DecodeError", err)
			}
			if c.offset >= 0 && de.Offset != c.offset {
				t.Errorf("offset %d, want %d (%v)", de.Offset, c.offset, err)
			}
		})
	}
}

func TestEncodeTensorErrors(t *testing.T) {
	cases := []struct {
		name string
		t    *Tensor
	}{
		{"nil", nil},
		{"wrong go type", &Tensor{DataType: Float, Dims: []int64{1}, Data: []float64{1}}},
		{"wrong length", &Tensor{DataType: Int64, Dims: []int64{2}, Data: []int64{1}}},
		{"nil data with elements", &Tensor{DataType: Int64, Dims: []int64{2}}},
		{"undefined type", &Tensor{Dims: []int64{0}}},
		{"negative dim", &Tensor{DataType: Float, Dims: []int64{-1}, Data: []float32{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := EncodeTensor(c.t); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDataTypeString(t *testing.T) {
	for dt, want := range map[DataType]string{Float: "FLOAT", Int64: "INT64", BFloat16: "BFLOAT16", Bool: "BOOL", DataType(77): "DataType(77)"} {
		if got := dt.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int32(dt), got, want)
		}
	}
}
