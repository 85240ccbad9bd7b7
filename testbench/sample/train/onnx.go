package main

import (
	"encoding/binary"
	"math"
)

// This file writes the trained model as an ONNX file with a minimal
// protobuf encoder. Only the fields the model needs are written; the
// numbers are those of onnx.proto:
//
//	ModelProto:         ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8
//	OperatorSetIdProto: domain 1, version 2
//	GraphProto:         node 1, name 2, initializer 5, input 11, output 12
//	NodeProto:          input 1, output 2, name 3, op_type 4, attribute 5
//	AttributeProto:     name 1, f 2, i 3, type 20 (FLOAT = 1, INT = 2)
//	TensorProto:        dims 1, data_type 2 (FLOAT = 1, INT64 = 7), name 8, raw_data 9
//	ValueInfoProto:     name 1, type 2
//	TypeProto:          tensor_type 1 → elem_type 1, shape 2 → dim 1 → dim_value 1 | dim_param 2

// pb builds one protobuf message.
type pb struct{ b []byte }

func (m *pb) tag(field, wire int) { m.varint(uint64(field)<<3 | uint64(wire)) }

func (m *pb) varint(v uint64) { m.b = binary.AppendUvarint(m.b, v) }

// Int writes a varint field (wire type 0).
func (m *pb) Int(field int, v int64) {
	m.tag(field, 0)
	m.varint(uint64(v))
}

// Float writes a 32-bit float field (wire type 5).
func (m *pb) Float(field int, v float32) {
	m.tag(field, 5)
	m.b = binary.LittleEndian.AppendUint32(m.b, math.Float32bits(v))
}

// Bytes writes a length-delimited field (wire type 2).
func (m *pb) Bytes(field int, v []byte) {
	m.tag(field, 2)
	m.varint(uint64(len(v)))
	m.b = append(m.b, v...)
}

func (m *pb) String(field int, s string) { m.Bytes(field, []byte(s)) }

func (m *pb) Msg(field int, sub *pb) { m.Bytes(field, sub.b) }

const (
	onnxFloat = 1
	onnxInt64 = 7
)

// tensor encodes a FLOAT initializer.
func tensor(name string, dims []int64, data []float32) *pb {
	t := &pb{}
	for _, d := range dims {
		t.Int(1, d)
	}
	t.Int(2, onnxFloat)
	t.String(8, name)
	raw := make([]byte, 0, 4*len(data))
	for _, v := range data {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	t.Bytes(9, raw)
	return t
}

// dim is a fixed size, or a symbolic one when param is not empty.
type dim struct {
	value int64
	param string
}

func valueInfo(name string, elem int64, shape ...dim) *pb {
	sh := &pb{}
	for _, d := range shape {
		dm := &pb{}
		if d.param != "" {
			dm.String(2, d.param)
		} else {
			dm.Int(1, d.value)
		}
		sh.Msg(1, dm)
	}
	tt := &pb{}
	tt.Int(1, elem)
	tt.Msg(2, sh)
	tp := &pb{}
	tp.Msg(1, tt)
	v := &pb{}
	v.String(1, name)
	v.Msg(2, tp)
	return v
}

type attr struct {
	name  string
	i     int64
	f     float32
	isInt bool
}

func node(op string, inputs, outputs []string, attrs ...attr) *pb {
	n := &pb{}
	for _, s := range inputs {
		n.String(1, s)
	}
	for _, s := range outputs {
		n.String(2, s)
	}
	n.String(3, outputs[0])
	n.String(4, op)
	for _, a := range attrs {
		at := &pb{}
		at.String(1, a.name)
		if a.isInt {
			at.Int(3, a.i)
			at.Int(20, 2)
		} else {
			at.Float(2, a.f)
			at.Int(20, 1)
		}
		n.Msg(5, at)
	}
	return n
}

// Model names used by the exported graph.
const (
	InputName  = "pixels"
	ProbsName  = "probabilities"
	LabelName  = "label"
	Producer   = "atelier-sample-train"
	IRVersion  = 8
	OpsetLevel = 13
)

// EncodeONNX writes the model as ONNX: input "pixels" FLOAT [batch, 64] of
// raw pixel values 0–16, Mul by 1/16, Gemm, Relu, Gemm, Softmax → output
// "probabilities" FLOAT [batch, 10], and ArgMax (keepdims 0) → output
// "label" INT64 [batch]. Opset 13, IR version 8.
func EncodeONNX(w Weights32) []byte {
	h := int64(w.Hidden)
	g := &pb{}
	for _, n := range []*pb{
		node("Mul", []string{InputName, "scale"}, []string{"scaled"}),
		node("Gemm", []string{"scaled", "W1", "B1"}, []string{"hidden_pre"}),
		node("Relu", []string{"hidden_pre"}, []string{"hidden"}),
		node("Gemm", []string{"hidden", "W2", "B2"}, []string{"logits"}),
		node("Softmax", []string{"logits"}, []string{ProbsName}, attr{name: "axis", i: 1, isInt: true}),
		node("ArgMax", []string{ProbsName}, []string{LabelName},
			attr{name: "axis", i: 1, isInt: true}, attr{name: "keepdims", i: 0, isInt: true}),
	} {
		g.Msg(1, n)
	}
	g.String(2, "digits_mlp")
	g.Msg(5, tensor("scale", nil, []float32{1.0 / MaxPixel}))
	g.Msg(5, tensor("W1", []int64{Pixels, h}, w.W1))
	g.Msg(5, tensor("B1", []int64{h}, w.B1))
	g.Msg(5, tensor("W2", []int64{h, Classes}, w.W2))
	g.Msg(5, tensor("B2", []int64{Classes}, w.B2))
	batch := dim{param: "batch"}
	g.Msg(11, valueInfo(InputName, onnxFloat, batch, dim{value: Pixels}))
	g.Msg(12, valueInfo(ProbsName, onnxFloat, batch, dim{value: Classes}))
	g.Msg(12, valueInfo(LabelName, onnxInt64, batch))

	m := &pb{}
	m.Int(1, IRVersion)
	m.String(2, Producer)
	m.String(3, "1")
	m.Msg(7, g)
	op := &pb{}
	op.Int(2, OpsetLevel)
	m.Msg(8, op)
	return m.b
}
