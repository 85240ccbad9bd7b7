package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Tensor is a dense tensor (TensorProto) with its data normalized to one Go
// slice, whatever field of the protobuf message carried it.
//
// Data holds the elements in row-major order: []float32 for FLOAT,
// []float64 for DOUBLE, []int8, []uint8, []int16, []uint16, []int32,
// []uint32, []int64, []uint64, []bool and []string for the matching types;
// FLOAT16 and BFLOAT16 as their []uint16 bit patterns; COMPLEX64 and
// COMPLEX128 as []float32 and []float64 with real and imaginary parts
// interleaved (two entries per element). A decoded Tensor always has a
// non-nil Data of the right type, empty when the tensor has no elements.
type Tensor struct {
	Name     string
	DataType DataType
	Dims     []int64
	Data     any
}

// NumElements returns the product of Dims (1 for a scalar), or an error when
// a dim is negative or the product overflows.
func NumElements(dims []int64) (int64, error) {
	n := int64(1)
	for i, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dim %d is %d, want >= 0", i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("dims %v: element count overflows int64", dims)
		}
		n = int64(lo)
	}
	return n, nil
}

// DecodeTensor decodes one TensorProto, such as the input_0.pb files of the
// ONNX test suites. See Decode for the rules it enforces.
func DecodeTensor(b []byte) (*Tensor, error) {
	return decodeTensor(b, 0)
}

// TensorProto field numbers.
const (
	tensorDims         = 1
	tensorDataType     = 2
	tensorSegment      = 3
	tensorFloatData    = 4
	tensorInt32Data    = 5
	tensorStringData   = 6
	tensorInt64Data    = 7
	tensorName         = 8
	tensorRawData      = 9
	tensorDoubleData   = 10
	tensorUint64Data   = 11
	tensorDocString    = 12
	tensorExternalData = 13
	tensorDataLocation = 14
)

func decodeTensor(b []byte, base int) (*Tensor, error) {
	r := newReader("TensorProto", b, base)
	t := &Tensor{}
	var (
		dims                      []uint64
		floats                    []uint32
		doubles, int64s, uint64s  []uint64
		int32s                    []uint64
		strs                      [][]byte
		raw                       []byte
		haveRaw, haveDT, external bool
		sources                   []string // data fields present, for error messages
		dataOff                   = base
	)
	seen := func(name string, off int) {
		for _, s := range sources {
			if s == name {
				return
			}
		}
		if len(sources) == 0 {
			dataOff = off
		}
		sources = append(sources, name)
	}
	for {
		f, ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch f.num {
		case tensorDims:
			if dims, err = r.varints(dims, f, "dims"); err != nil {
				return nil, err
			}
		case tensorDataType:
			v, err := r.int32Field(f, "data_type")
			if err != nil {
				return nil, err
			}
			t.DataType, haveDT = DataType(v), true
		case tensorSegment:
			return nil, &DecodeError{Message: "TensorProto", Field: "segment", Offset: f.off, Reason: "segmented tensors are not supported", Err: ErrUnsupported}
		case tensorFloatData:
			seen("float_data", f.off)
			if floats, err = r.fixed32s(floats, f, "float_data"); err != nil {
				return nil, err
			}
		case tensorInt32Data:
			seen("int32_data", f.off)
			if int32s, err = r.varints(int32s, f, "int32_data"); err != nil {
				return nil, err
			}
		case tensorStringData:
			seen("string_data", f.off)
			s, err := r.bytesField(f, "string_data")
			if err != nil {
				return nil, err
			}
			strs = append(strs, s)
		case tensorInt64Data:
			seen("int64_data", f.off)
			if int64s, err = r.varints(int64s, f, "int64_data"); err != nil {
				return nil, err
			}
		case tensorName:
			if t.Name, err = r.stringField(f, "name"); err != nil {
				return nil, err
			}
		case tensorRawData:
			seen("raw_data", f.off)
			if raw, err = r.bytesField(f, "raw_data"); err != nil {
				return nil, err
			}
			haveRaw = true
		case tensorDoubleData:
			seen("double_data", f.off)
			if doubles, err = r.fixed64s(doubles, f, "double_data"); err != nil {
				return nil, err
			}
		case tensorUint64Data:
			seen("uint64_data", f.off)
			if uint64s, err = r.varints(uint64s, f, "uint64_data"); err != nil {
				return nil, err
			}
		case tensorExternalData:
			if _, err := r.bytesField(f, "external_data"); err != nil {
				return nil, err
			}
			external = true
		case tensorDataLocation:
			v, err := r.int32Field(f, "data_location")
			if err != nil {
				return nil, err
			}
			if v == 1 {
				external = true
			}
		default:
			// doc_string, metadata_props and fields added by later
			// versions of onnx.proto carry no data: skip them.
		}
	}
	name := t.Name
	if name == "" {
		name = "(unnamed)"
	}
	fail := func(off int, sentinel error, format string, args ...any) error {
		return &DecodeError{Message: "TensorProto", Field: "", Offset: off, Reason: fmt.Sprintf("tensor %q: ", name) + fmt.Sprintf(format, args...), Err: sentinel}
	}
	if external {
		return nil, fail(base, ErrExternalData, "data is stored outside the model")
	}
	if !haveDT {
		return nil, fail(base, ErrMalformed, "no data_type")
	}
	if !t.DataType.Known() {
		return nil, fail(base, ErrUnsupported, "data type %s", t.DataType)
	}
	t.Dims = make([]int64, len(dims))
	for i, d := range dims {
		t.Dims[i] = int64(d)
	}
	n, err := NumElements(t.Dims)
	if err != nil {
		return nil, fail(base, ErrMalformed, "%v", err)
	}
	if len(sources) > 1 {
		return nil, fail(dataOff, ErrMalformed, "data in more than one field: %v", sources)
	}
	src := "no data field"
	if len(sources) == 1 {
		src = sources[0]
	}
	// want is the number of Data entries the dims call for.
	comp := int64(t.DataType.components())
	if n > math.MaxInt64/comp {
		return nil, fail(base, ErrMalformed, "dims %v: element count overflows", t.Dims)
	}
	want := n * comp
	got := int64(-1)
	switch {
	case haveRaw:
		if t.DataType == String {
			return nil, fail(dataOff, ErrMalformed, "STRING tensor in raw_data, want string_data")
		}
		es := int64(t.DataType.elemSize())
		if int64(len(raw))%es != 0 {
			return nil, fail(dataOff, ErrMalformed, "raw_data has %d bytes, not a multiple of the %d-byte %s element", len(raw), es, t.DataType)
		}
		got = int64(len(raw)) / es
		if got == want {
			t.Data = fromRaw(t.DataType, raw)
		}
	case len(sources) == 0:
		got = 0
		if want == 0 {
			t.Data = fromRaw(t.DataType, nil)
		}
	default:
		okField := map[DataType]string{
			Float: "float_data", Complex64: "float_data",
			Double: "double_data", Complex128: "double_data",
			Int64: "int64_data", String: "string_data",
			Uint32: "uint64_data", Uint64: "uint64_data",
		}[t.DataType]
		if okField == "" {
			okField = "int32_data"
		}
		if src != okField {
			return nil, fail(dataOff, ErrMalformed, "%s tensor carries %s, want %s or raw_data", t.DataType, src, okField)
		}
		switch src {
		case "float_data":
			got = int64(len(floats))
		case "double_data":
			got = int64(len(doubles))
		case "int64_data":
			got = int64(len(int64s))
		case "string_data":
			got = int64(len(strs))
		case "uint64_data":
			got = int64(len(uint64s))
		case "int32_data":
			got = int64(len(int32s))
		}
		if got == want {
			var err error
			t.Data, err = fromTyped(t.DataType, floats, doubles, int64s, uint64s, int32s, strs)
			if err != nil {
				return nil, fail(dataOff, ErrMalformed, "%s: %v", src, err)
			}
		}
	}
	if got != want {
		return nil, fail(dataOff, ErrMalformed, "%s holds %d values, dims %v of %s need %d", src, got, t.Dims, t.DataType, want)
	}
	return t, nil
}

// fromRaw converts little-endian raw_data; len(raw) is a multiple of the
// element size.
func fromRaw(dt DataType, raw []byte) any {
	le := binary.LittleEndian
	switch dt {
	case Float, Complex64:
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out
	case Double, Complex128:
		out := make([]float64, len(raw)/8)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return out
	case Uint8:
		return append(make([]uint8, 0, len(raw)), raw...)
	case Int8:
		out := make([]int8, len(raw))
		for i, c := range raw {
			out[i] = int8(c)
		}
		return out
	case Bool:
		out := make([]bool, len(raw))
		for i, c := range raw {
			out[i] = c != 0
		}
		return out
	case Uint16, Float16, BFloat16:
		out := make([]uint16, len(raw)/2)
		for i := range out {
			out[i] = le.Uint16(raw[2*i:])
		}
		return out
	case Int16:
		out := make([]int16, len(raw)/2)
		for i := range out {
			out[i] = int16(le.Uint16(raw[2*i:]))
		}
		return out
	case Int32:
		out := make([]int32, len(raw)/4)
		for i := range out {
			out[i] = int32(le.Uint32(raw[4*i:]))
		}
		return out
	case Uint32:
		out := make([]uint32, len(raw)/4)
		for i := range out {
			out[i] = le.Uint32(raw[4*i:])
		}
		return out
	case Int64:
		out := make([]int64, len(raw)/8)
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
		return out
	case Uint64:
		out := make([]uint64, len(raw)/8)
		for i := range out {
			out[i] = le.Uint64(raw[8*i:])
		}
		return out
	case String:
		return []string{}
	}
	return nil
}

// fromTyped converts the typed repeated fields; the caller has checked that
// the field matches dt.
func fromTyped(dt DataType, floats []uint32, doubles, int64s, uint64s, int32s []uint64, strs [][]byte) (any, error) {
	// int32_data carries int32 values as sign-extended varints.
	i32 := func(i int) int64 { return int64(int32(int32s[i])) }
	rangeErr := func(i int, lo, hi int64) error {
		return fmt.Errorf("value %d at index %d is outside [%d, %d] for the element type", i32(i), i, lo, hi)
	}
	for i, v := range int32s {
		if int64(v) != int64(int32(v)) && int64(v) != int64(uint32(v)) {
			return nil, fmt.Errorf("value %d at index %d does not fit int32", int64(v), i)
		}
	}
	switch dt {
	case Float, Complex64:
		out := make([]float32, len(floats))
		for i, v := range floats {
			out[i] = math.Float32frombits(v)
		}
		return out, nil
	case Double, Complex128:
		out := make([]float64, len(doubles))
		for i, v := range doubles {
			out[i] = math.Float64frombits(v)
		}
		return out, nil
	case Int64:
		out := make([]int64, len(int64s))
		for i, v := range int64s {
			out[i] = int64(v)
		}
		return out, nil
	case Uint64:
		return append(make([]uint64, 0, len(uint64s)), uint64s...), nil
	case Uint32:
		out := make([]uint32, len(uint64s))
		for i, v := range uint64s {
			if v > math.MaxUint32 {
				return nil, fmt.Errorf("value %d at index %d does not fit uint32", v, i)
			}
			out[i] = uint32(v)
		}
		return out, nil
	case String:
		out := make([]string, len(strs))
		for i, s := range strs {
			out[i] = string(s)
		}
		return out, nil
	case Int32:
		out := make([]int32, len(int32s))
		for i := range int32s {
			out[i] = int32(i32(i))
		}
		return out, nil
	case Int8:
		out := make([]int8, len(int32s))
		for i := range int32s {
			if v := i32(i); v < math.MinInt8 || v > math.MaxInt8 {
				return nil, rangeErr(i, math.MinInt8, math.MaxInt8)
			}
			out[i] = int8(i32(i))
		}
		return out, nil
	case Uint8:
		out := make([]uint8, len(int32s))
		for i := range int32s {
			if v := i32(i); v < 0 || v > math.MaxUint8 {
				return nil, rangeErr(i, 0, math.MaxUint8)
			}
			out[i] = uint8(i32(i))
		}
		return out, nil
	case Int16:
		out := make([]int16, len(int32s))
		for i := range int32s {
			if v := i32(i); v < math.MinInt16 || v > math.MaxInt16 {
				return nil, rangeErr(i, math.MinInt16, math.MaxInt16)
			}
			out[i] = int16(i32(i))
		}
		return out, nil
	case Uint16, Float16, BFloat16:
		out := make([]uint16, len(int32s))
		for i := range int32s {
			if v := i32(i); v < 0 || v > math.MaxUint16 {
				return nil, rangeErr(i, 0, math.MaxUint16)
			}
			out[i] = uint16(i32(i))
		}
		return out, nil
	case Bool:
		out := make([]bool, len(int32s))
		for i := range int32s {
			if v := i32(i); v != 0 && v != 1 {
				return nil, rangeErr(i, 0, 1)
			}
			out[i] = i32(i) == 1
		}
		return out, nil
	}
	return nil, fmt.Errorf("data type %s: %w", dt, ErrUnsupported)
}

// dataLen returns the number of entries in a Data slice and whether its Go
// type matches dt.
func dataLen(dt DataType, data any) (int, bool) {
	switch d := data.(type) {
	case []float32:
		return len(d), dt == Float || dt == Complex64
	case []float64:
		return len(d), dt == Double || dt == Complex128
	case []int8:
		return len(d), dt == Int8
	case []uint8:
		return len(d), dt == Uint8
	case []int16:
		return len(d), dt == Int16
	case []uint16:
		return len(d), dt == Uint16 || dt == Float16 || dt == BFloat16
	case []int32:
		return len(d), dt == Int32
	case []uint32:
		return len(d), dt == Uint32
	case []int64:
		return len(d), dt == Int64
	case []uint64:
		return len(d), dt == Uint64
	case []bool:
		return len(d), dt == Bool
	case []string:
		return len(d), dt == String
	}
	return 0, false
}

// EncodeTensor encodes t as a TensorProto. Numeric data is written to
// raw_data (little-endian), strings to string_data. It fails with ErrInvalid
// when Data's Go type does not match DataType or its length does not match
// Dims. A nil Data is allowed only when Dims has no elements.
func EncodeTensor(t *Tensor) ([]byte, error) {
	return appendTensor(nil, t)
}

func appendTensor(b []byte, t *Tensor) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("encode tensor: nil tensor: %w", ErrInvalid)
	}
	if !t.DataType.Known() {
		return nil, fmt.Errorf("encode tensor %q: data type %s: %w", t.Name, t.DataType, ErrInvalid)
	}
	n, err := NumElements(t.Dims)
	if err != nil {
		return nil, fmt.Errorf("encode tensor %q: %v: %w", t.Name, err, ErrInvalid)
	}
	want := n * int64(t.DataType.components())
	data := t.Data
	if data == nil {
		data = fromRaw(t.DataType, nil)
	}
	got, ok := dataLen(t.DataType, data)
	if !ok {
		return nil, fmt.Errorf("encode tensor %q: Data is %T, not the Go type for %s: %w", t.Name, t.Data, t.DataType, ErrInvalid)
	}
	if int64(got) != want {
		return nil, fmt.Errorf("encode tensor %q: Data has %d values, dims %v of %s need %d: %w", t.Name, got, t.Dims, t.DataType, want, ErrInvalid)
	}
	b = appendPackedVarints(b, tensorDims, t.Dims)
	b = appendVarint(b, tensorDataType, uint64(t.DataType))
	if t.Name != "" {
		b = appendString(b, tensorName, t.Name)
	}
	if d, ok := data.([]string); ok {
		for _, s := range d {
			b = appendString(b, tensorStringData, s)
		}
		return b, nil
	}
	if got == 0 {
		return b, nil
	}
	size := got * t.DataType.elemSize()
	b = slices.Grow(b, size+2*binary.MaxVarintLen64)
	b = protowire.AppendTag(b, tensorRawData, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	return appendRaw(b, data), nil
}

func appendRaw(b []byte, data any) []byte {
	le := binary.LittleEndian
	switch d := data.(type) {
	case []float32:
		for _, v := range d {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	case []float64:
		for _, v := range d {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
	case []int8:
		for _, v := range d {
			b = append(b, byte(v))
		}
	case []uint8:
		b = append(b, d...)
	case []bool:
		for _, v := range d {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case []int16:
		for _, v := range d {
			b = le.AppendUint16(b, uint16(v))
		}
	case []uint16:
		for _, v := range d {
			b = le.AppendUint16(b, v)
		}
	case []int32:
		for _, v := range d {
			b = le.AppendUint32(b, uint32(v))
		}
	case []uint32:
		for _, v := range d {
			b = le.AppendUint32(b, v)
		}
	case []int64:
		for _, v := range d {
			b = le.AppendUint64(b, uint64(v))
		}
	case []uint64:
		for _, v := range d {
			b = le.AppendUint64(b, v)
		}
	}
	return b
}
