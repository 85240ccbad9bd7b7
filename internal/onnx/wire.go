package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// field is one decoded protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	off int    // absolute offset of the tag in the top-level input
	v   uint64 // value of varint, fixed32 and fixed64 fields
	b   []byte // payload of length-delimited fields (aliases the input)
	raw []byte // the whole field, tag included (aliases the input)
	pay int    // absolute offset of the payload (after tag and length)
}

// reader walks the fields of one message.
type reader struct {
	msg  string
	b    []byte
	base int // absolute offset of b[0]
	pos  int
}

func newReader(msg string, b []byte, base int) *reader {
	return &reader{msg: msg, b: b, base: base}
}

// next returns the next field; ok is false at the end of the message.
func (r *reader) next() (f field, ok bool, err error) {
	if r.pos >= len(r.b) {
		return field{}, false, nil
	}
	start := r.pos
	f.off = r.base + start
	num, typ, n := protowire.ConsumeTag(r.b[start:])
	if n < 0 {
		return field{}, false, r.errAt(f.off, "", fmt.Sprintf("bad field tag: %v", protowire.ParseError(n)))
	}
	f.num, f.typ = num, typ
	rest := r.b[start+n:]
	var m int
	switch typ {
	case protowire.VarintType:
		f.v, m = protowire.ConsumeVarint(rest)
	case protowire.Fixed32Type:
		var v uint32
		v, m = protowire.ConsumeFixed32(rest)
		f.v = uint64(v)
	case protowire.Fixed64Type:
		f.v, m = protowire.ConsumeFixed64(rest)
	case protowire.BytesType:
		var l uint64
		var ln int
		l, ln = protowire.ConsumeVarint(rest)
		if ln < 0 {
			m = ln
			break
		}
		if l > uint64(len(rest)-ln) {
			return field{}, false, r.errAt(f.off, "", fmt.Sprintf("field %d declares %d bytes, only %d remain", num, l, len(rest)-ln))
		}
		f.b = rest[ln : ln+int(l)]
		f.pay = r.base + start + n + ln
		m = ln + int(l)
	case protowire.StartGroupType, protowire.EndGroupType:
		return field{}, false, r.errAt(f.off, "", fmt.Sprintf("field %d uses the group wire type %d, which ONNX never uses", num, typ))
	default:
		return field{}, false, r.errAt(f.off, "", fmt.Sprintf("field %d has invalid wire type %d", num, typ))
	}
	if m < 0 {
		return field{}, false, r.errAt(f.off, "", fmt.Sprintf("field %d: truncated or bad value: %v", num, protowire.ParseError(m)))
	}
	r.pos = start + n + m
	f.raw = r.b[start:r.pos]
	return f, true, nil
}

func (r *reader) errAt(off int, fieldName, reason string) error {
	return &DecodeError{Message: r.msg, Field: fieldName, Offset: off, Reason: reason, Err: ErrMalformed}
}

var wireNames = map[protowire.Type]string{
	protowire.VarintType:  "varint",
	protowire.Fixed32Type: "fixed32",
	protowire.Fixed64Type: "fixed64",
	protowire.BytesType:   "length-delimited",
}

// wrongType reports a known field carried with an unexpected wire type.
func (r *reader) wrongType(f field, name, want string) error {
	return r.errAt(f.off, name, fmt.Sprintf("wire type %s, want %s", wireNames[f.typ], want))
}

// bytesField checks that f is length-delimited and returns its payload.
func (r *reader) bytesField(f field, name string) ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, r.wrongType(f, name, "length-delimited")
	}
	return f.b, nil
}

func (r *reader) stringField(f field, name string) (string, error) {
	b, err := r.bytesField(f, name)
	return string(b), err
}

func (r *reader) varintField(f field, name string) (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, r.wrongType(f, name, "varint")
	}
	return f.v, nil
}

// int32Field decodes an int32 or enum field, refusing values outside int32.
func (r *reader) int32Field(f field, name string) (int32, error) {
	v, err := r.varintField(f, name)
	if err != nil {
		return 0, err
	}
	i := int64(v)
	if i < math.MinInt32 || i > math.MaxInt32 {
		return 0, r.errAt(f.off, name, fmt.Sprintf("value %d does not fit int32", i))
	}
	return int32(i), nil
}

// varints appends a repeated varint field, packed or not.
func (r *reader) varints(dst []uint64, f field, name string) ([]uint64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, f.v), nil
	case protowire.BytesType:
		n := 0
		for _, c := range f.b {
			if c < 0x80 {
				n++
			}
		}
		if dst == nil {
			dst = make([]uint64, 0, n)
		}
		b := f.b
		for len(b) > 0 {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, r.errAt(f.pay+len(f.b)-len(b), name, fmt.Sprintf("bad packed varint: %v", protowire.ParseError(m)))
			}
			dst = append(dst, v)
			b = b[m:]
		}
		return dst, nil
	}
	return nil, r.wrongType(f, name, "varint or packed varints")
}

// fixed32s appends a repeated fixed32 (float) field, packed or not.
func (r *reader) fixed32s(dst []uint32, f field, name string) ([]uint32, error) {
	switch f.typ {
	case protowire.Fixed32Type:
		return append(dst, uint32(f.v)), nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return nil, r.errAt(f.off, name, fmt.Sprintf("packed fixed32 payload of %d bytes is not a multiple of 4", len(f.b)))
		}
		if dst == nil {
			dst = make([]uint32, 0, len(f.b)/4)
		}
		for i := 0; i < len(f.b); i += 4 {
			v, _ := protowire.ConsumeFixed32(f.b[i:])
			dst = append(dst, v)
		}
		return dst, nil
	}
	return nil, r.wrongType(f, name, "fixed32 or packed fixed32")
}

// fixed64s appends a repeated fixed64 (double) field, packed or not.
func (r *reader) fixed64s(dst []uint64, f field, name string) ([]uint64, error) {
	switch f.typ {
	case protowire.Fixed64Type:
		return append(dst, f.v), nil
	case protowire.BytesType:
		if len(f.b)%8 != 0 {
			return nil, r.errAt(f.off, name, fmt.Sprintf("packed fixed64 payload of %d bytes is not a multiple of 8", len(f.b)))
		}
		if dst == nil {
			dst = make([]uint64, 0, len(f.b)/8)
		}
		for i := 0; i < len(f.b); i += 8 {
			v, _ := protowire.ConsumeFixed64(f.b[i:])
			dst = append(dst, v)
		}
		return dst, nil
	}
	return nil, r.wrongType(f, name, "fixed64 or packed fixed64")
}

// Encoding helpers. Each appends one field to b.

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendPackedVarints(b []byte, num protowire.Number, vs []int64) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

func appendPackedFloats(b []byte, num protowire.Number, vs []float32) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(4*len(vs)))
	for _, v := range vs {
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	}
	return b
}

// appendMessage appends a nested message built by enc.
func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = slices.Grow(b, len(msg)+2*binary.MaxVarintLen64)
	return appendBytes(b, num, msg)
}
