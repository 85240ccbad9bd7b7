package onnx

import (
	"bytes"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxDepth bounds how deeply subgraphs (If, Loop, Scan bodies) may nest.
const maxDepth = 64

// Decode parses an ONNX model file.
//
// It is strict: it refuses bytes that are not protobuf or not a ModelProto
// (an ir_version and a graph are required), known fields carried with the
// wrong wire type, tensors whose data length disagrees with their dims or
// whose data type it cannot normalize, and tensors whose data is stored in
// external files (ErrExternalData). Errors are *DecodeError values that name
// the message, field and byte offset and wrap ErrMalformed,
// ErrExternalData or ErrUnsupported. Fields it does not model are kept in
// the Unknown byte slices. Decode never panics; it allocates at most a small
// multiple of len(b).
func Decode(b []byte) (*Model, error) {
	r := newReader("ModelProto", b, 0)
	if len(b) == 0 {
		return nil, r.errAt(0, "", "empty input; not an ONNX model")
	}
	m := &Model{}
	var haveIR bool
	for {
		f, ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch f.num {
		case modelIRVersion:
			v, err := r.varintField(f, "ir_version")
			if err != nil {
				return nil, err
			}
			m.IRVersion, haveIR = int64(v), true
		case modelProducerName:
			m.ProducerName, err = r.stringField(f, "producer_name")
		case modelProducerVersion:
			m.ProducerVersion, err = r.stringField(f, "producer_version")
		case modelDomain:
			m.Domain, err = r.stringField(f, "domain")
		case modelModelVersion:
			var v uint64
			v, err = r.varintField(f, "model_version")
			m.ModelVersion = int64(v)
		case modelDocString:
			m.DocString, err = r.stringField(f, "doc_string")
		case modelGraph:
			var p []byte
			if p, err = r.bytesField(f, "graph"); err != nil {
				return nil, err
			}
			if m.Graph != nil {
				return nil, r.errAt(f.off, "graph", "more than one graph")
			}
			m.Graph, err = decodeGraph(p, f.pay, 0)
		case modelOpsetImport:
			var p []byte
			if p, err = r.bytesField(f, "opset_import"); err != nil {
				return nil, err
			}
			var o OpsetImport
			o, err = decodeOpset(p, f.pay)
			m.Opsets = append(m.Opsets, o)
		default:
			m.Unknown = append(m.Unknown, f.raw...)
		}
		if err != nil {
			return nil, err
		}
	}
	if !haveIR || m.IRVersion <= 0 {
		return nil, r.errAt(0, "ir_version", "missing or not positive; not an ONNX model")
	}
	if m.Graph == nil {
		return nil, r.errAt(0, "graph", "model has no graph")
	}
	return m, nil
}

func decodeOpset(b []byte, base int) (OpsetImport, error) {
	r := newReader("OperatorSetIdProto", b, base)
	var o OpsetImport
	for {
		f, ok, err := r.next()
		if err != nil || !ok {
			return o, err
		}
		switch f.num {
		case opsetDomain:
			o.Domain, err = r.stringField(f, "domain")
		case opsetVersion:
			var v uint64
			v, err = r.varintField(f, "version")
			o.Version = int64(v)
		}
		if err != nil {
			return o, err
		}
	}
}

func decodeGraph(b []byte, base, depth int) (*Graph, error) {
	r := newReader("GraphProto", b, base)
	if depth > maxDepth {
		return nil, r.errAt(base, "", fmt.Sprintf("subgraphs nested deeper than %d", maxDepth))
	}
	g := &Graph{}
	for {
		f, ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return g, nil
		}
		var p []byte
		switch f.num {
		case graphNode, graphInitializer, graphInput, graphOutput, graphValueInfo:
			name := map[int]string{graphNode: "node", graphInitializer: "initializer", graphInput: "input", graphOutput: "output", graphValueInfo: "value_info"}[int(f.num)]
			if p, err = r.bytesField(f, name); err != nil {
				return nil, err
			}
		}
		switch f.num {
		case graphNode:
			var n Node
			n, err = decodeNode(p, f.pay, depth)
			g.Nodes = append(g.Nodes, n)
		case graphName:
			g.Name, err = r.stringField(f, "name")
		case graphInitializer:
			var t *Tensor
			t, err = decodeTensor(p, f.pay)
			g.Initializers = append(g.Initializers, t)
		case graphInput:
			var v ValueInfo
			v, err = decodeValueInfo(p, f.pay)
			g.Inputs = append(g.Inputs, v)
		case graphOutput:
			var v ValueInfo
			v, err = decodeValueInfo(p, f.pay)
			g.Outputs = append(g.Outputs, v)
		case graphValueInfo:
			var v ValueInfo
			v, err = decodeValueInfo(p, f.pay)
			g.ValueInfo = append(g.ValueInfo, v)
		default:
			g.Unknown = append(g.Unknown, f.raw...)
		}
		if err != nil {
			return nil, err
		}
	}
}

func decodeNode(b []byte, base, depth int) (Node, error) {
	r := newReader("NodeProto", b, base)
	var n Node
	for {
		f, ok, err := r.next()
		if err != nil || !ok {
			return n, err
		}
		switch f.num {
		case nodeInput:
			var s string
			s, err = r.stringField(f, "input")
			n.Inputs = append(n.Inputs, s)
		case nodeOutput:
			var s string
			s, err = r.stringField(f, "output")
			n.Outputs = append(n.Outputs, s)
		case nodeName:
			n.Name, err = r.stringField(f, "name")
		case nodeOpType:
			n.OpType, err = r.stringField(f, "op_type")
		case nodeDomain:
			n.Domain, err = r.stringField(f, "domain")
		case nodeAttribute:
			var p []byte
			if p, err = r.bytesField(f, "attribute"); err != nil {
				return n, err
			}
			var a Attr
			a, err = decodeAttr(p, f.pay, depth)
			n.Attrs = append(n.Attrs, a)
		default:
			n.Unknown = append(n.Unknown, f.raw...)
		}
		if err != nil {
			return n, err
		}
	}
}

func decodeAttr(b []byte, base, depth int) (Attr, error) {
	r := newReader("AttributeProto", b, base)
	var a Attr
	for {
		f, ok, err := r.next()
		if err != nil || !ok {
			return a, err
		}
		switch f.num {
		case attrName:
			a.Name, err = r.stringField(f, "name")
		case attrType:
			var v int32
			v, err = r.int32Field(f, "type")
			a.Type = AttrType(v)
		case attrF:
			if f.typ != protowire.Fixed32Type {
				return a, r.wrongType(f, "f", "fixed32")
			}
			a.F = math.Float32frombits(uint32(f.v))
		case attrI:
			var v uint64
			v, err = r.varintField(f, "i")
			a.I = int64(v)
		case attrS:
			var p []byte
			p, err = r.bytesField(f, "s")
			a.S = bytes.Clone(p)
		case attrT, attrTensors:
			var p []byte
			if p, err = r.bytesField(f, "t"); err != nil {
				return a, err
			}
			var t *Tensor
			if t, err = decodeTensor(p, f.pay); err != nil {
				return a, err
			}
			if f.num == attrT {
				a.T = t
			} else {
				a.Tensors = append(a.Tensors, t)
			}
		case attrG, attrGraphs:
			var p []byte
			if p, err = r.bytesField(f, "g"); err != nil {
				return a, err
			}
			var g *Graph
			if g, err = decodeGraph(p, f.pay, depth+1); err != nil {
				return a, err
			}
			if f.num == attrG {
				a.G = g
			} else {
				a.Graphs = append(a.Graphs, g)
			}
		case attrFloats:
			var u []uint32
			if u, err = r.fixed32s(nil, f, "floats"); err != nil {
				return a, err
			}
			for _, v := range u {
				a.Floats = append(a.Floats, math.Float32frombits(v))
			}
		case attrInts:
			var u []uint64
			if u, err = r.varints(nil, f, "ints"); err != nil {
				return a, err
			}
			for _, v := range u {
				a.Ints = append(a.Ints, int64(v))
			}
		case attrStrings:
			var p []byte
			p, err = r.bytesField(f, "strings")
			a.Strings = append(a.Strings, bytes.Clone(p))
		default:
			a.Unknown = append(a.Unknown, f.raw...)
		}
		if err != nil {
			return a, err
		}
	}
}

func decodeValueInfo(b []byte, base int) (ValueInfo, error) {
	r := newReader("ValueInfoProto", b, base)
	var v ValueInfo
	for {
		f, ok, err := r.next()
		if err != nil || !ok {
			return v, err
		}
		switch f.num {
		case valueInfoName:
			v.Name, err = r.stringField(f, "name")
		case valueInfoType:
			var p []byte
			if p, err = r.bytesField(f, "type"); err != nil {
				return v, err
			}
			err = decodeType(&v, p, f.pay)
		default:
			v.Unknown = append(v.Unknown, f.raw...)
		}
		if err != nil {
			return v, err
		}
	}
}

// decodeType fills v from a TypeProto. A TypeProto that is exactly one
// tensor_type is modeled; anything else is kept whole in v.OtherType.
func decodeType(v *ValueInfo, b []byte, base int) error {
	r := newReader("TypeProto", b, base)
	var tensor []byte
	tensorOff := 0
	other := false
	for {
		f, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if f.num == typeTensorType && tensor == nil {
			if tensor, err = r.bytesField(f, "tensor_type"); err != nil {
				return err
			}
			tensorOff = f.pay
			continue
		}
		other = true
	}
	if other || tensor == nil {
		v.OtherType = bytes.Clone(b)
		if v.OtherType == nil {
			v.OtherType = []byte{}
		}
		return nil
	}
	r = newReader("TypeProto.Tensor", tensor, tensorOff)
	for {
		f, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		switch f.num {
		case tensorTypeElemType:
			var e int32
			e, err = r.int32Field(f, "elem_type")
			v.ElemType = DataType(e)
		case tensorTypeShape:
			var p []byte
			if p, err = r.bytesField(f, "shape"); err != nil {
				return err
			}
			v.HasShape = true
			v.Shape, err = decodeShape(p, f.pay)
		}
		if err != nil {
			return err
		}
	}
}

func decodeShape(b []byte, base int) ([]Dim, error) {
	r := newReader("TensorShapeProto", b, base)
	var dims []Dim
	for {
		f, ok, err := r.next()
		if err != nil || !ok {
			return dims, err
		}
		if f.num != shapeDim {
			continue
		}
		p, err := r.bytesField(f, "dim")
		if err != nil {
			return nil, err
		}
		d := Dim{Value: -1}
		dr := newReader("TensorShapeProto.Dimension", p, f.pay)
		for {
			df, ok, err := dr.next()
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			switch df.num {
			case dimValue:
				v, err := dr.varintField(df, "dim_value")
				if err != nil {
					return nil, err
				}
				if int64(v) < 0 {
					return nil, dr.errAt(df.off, "dim_value", fmt.Sprintf("negative dimension %d", int64(v)))
				}
				d.Value, d.Param = int64(v), ""
			case dimParam:
				s, err := dr.stringField(df, "dim_param")
				if err != nil {
					return nil, err
				}
				d.Value, d.Param = -1, s
			}
		}
		dims = append(dims, d)
	}
}
