package onnx

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the messages this package encodes and decodes.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDomain          = 4
	modelModelVersion    = 5
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	graphValueInfo   = 13

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName    = 1
	attrF       = 2
	attrI       = 3
	attrS       = 4
	attrT       = 5
	attrG       = 6
	attrFloats  = 7
	attrInts    = 8
	attrStrings = 9
	attrTensors = 10
	attrGraphs  = 11
	attrType    = 20

	valueInfoName = 1
	valueInfoType = 2

	typeTensorType = 1

	tensorTypeElemType = 1
	tensorTypeShape    = 2

	shapeDim = 1

	dimValue = 1
	dimParam = 2
)

// Encode serializes the model as an ONNX file. It fails with ErrInvalid when
// the model has no graph or a tensor cannot be encoded (see EncodeTensor).
func (m *Model) Encode() ([]byte, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("encode model: no graph: %w", ErrInvalid)
	}
	var b []byte
	b = appendVarint(b, modelIRVersion, uint64(m.IRVersion))
	for _, o := range m.Opsets {
		var ob []byte
		if o.Domain != "" {
			ob = appendString(ob, opsetDomain, o.Domain)
		}
		ob = appendVarint(ob, opsetVersion, uint64(o.Version))
		b = appendMessage(b, modelOpsetImport, ob)
	}
	if m.ProducerName != "" {
		b = appendString(b, modelProducerName, m.ProducerName)
	}
	if m.ProducerVersion != "" {
		b = appendString(b, modelProducerVersion, m.ProducerVersion)
	}
	if m.Domain != "" {
		b = appendString(b, modelDomain, m.Domain)
	}
	if m.ModelVersion != 0 {
		b = appendVarint(b, modelModelVersion, uint64(m.ModelVersion))
	}
	if m.DocString != "" {
		b = appendString(b, modelDocString, m.DocString)
	}
	g, err := encodeGraph(m.Graph, 0)
	if err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}
	b = appendMessage(b, modelGraph, g)
	return append(b, m.Unknown...), nil
}

func encodeGraph(g *Graph, depth int) ([]byte, error) {
	if g == nil {
		return nil, fmt.Errorf("nil graph: %w", ErrInvalid)
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("graph %q: subgraphs nested deeper than %d: %w", g.Name, maxDepth, ErrInvalid)
	}
	var b []byte
	for i := range g.Nodes {
		nb, err := encodeNode(&g.Nodes[i], depth)
		if err != nil {
			return nil, fmt.Errorf("graph %q: %w", g.Name, err)
		}
		b = appendMessage(b, graphNode, nb)
	}
	if g.Name != "" {
		b = appendString(b, graphName, g.Name)
	}
	for _, t := range g.Initializers {
		tb, err := EncodeTensor(t)
		if err != nil {
			return nil, fmt.Errorf("graph %q: initializer: %w", g.Name, err)
		}
		b = appendMessage(b, graphInitializer, tb)
	}
	for _, l := range []struct {
		num protowire.Number
		vs  []ValueInfo
	}{{graphInput, g.Inputs}, {graphOutput, g.Outputs}, {graphValueInfo, g.ValueInfo}} {
		for i := range l.vs {
			b = appendMessage(b, l.num, encodeValueInfo(&l.vs[i]))
		}
	}
	return append(b, g.Unknown...), nil
}

func encodeNode(n *Node, depth int) ([]byte, error) {
	var b []byte
	for _, s := range n.Inputs {
		b = appendString(b, nodeInput, s)
	}
	for _, s := range n.Outputs {
		b = appendString(b, nodeOutput, s)
	}
	if n.Name != "" {
		b = appendString(b, nodeName, n.Name)
	}
	b = appendString(b, nodeOpType, n.OpType)
	for i := range n.Attrs {
		ab, err := encodeAttr(&n.Attrs[i], depth)
		if err != nil {
			return nil, fmt.Errorf("node %q (%s): %w", n.Name, n.OpType, err)
		}
		b = appendMessage(b, nodeAttribute, ab)
	}
	if n.Domain != "" {
		b = appendString(b, nodeDomain, n.Domain)
	}
	return append(b, n.Unknown...), nil
}

// encodeAttr writes the value field named by Type and every other value
// field that is set, so an attribute decoded from a file that filled more
// than one survives unchanged.
func encodeAttr(a *Attr, depth int) ([]byte, error) {
	var b []byte
	b = appendString(b, attrName, a.Name)
	if a.Type == AttrFloat || math.Float32bits(a.F) != 0 {
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	}
	if a.Type == AttrInt || a.I != 0 {
		b = appendVarint(b, attrI, uint64(a.I))
	}
	if a.Type == AttrString || a.S != nil {
		b = appendBytes(b, attrS, a.S)
	}
	if a.T != nil {
		tb, err := EncodeTensor(a.T)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		b = appendMessage(b, attrT, tb)
	}
	if a.G != nil {
		gb, err := encodeGraph(a.G, depth+1)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		b = appendMessage(b, attrG, gb)
	}
	b = appendPackedFloats(b, attrFloats, a.Floats)
	b = appendPackedVarints(b, attrInts, a.Ints)
	for _, s := range a.Strings {
		b = appendBytes(b, attrStrings, s)
	}
	for _, t := range a.Tensors {
		tb, err := EncodeTensor(t)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		b = appendMessage(b, attrTensors, tb)
	}
	for _, g := range a.Graphs {
		gb, err := encodeGraph(g, depth+1)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		b = appendMessage(b, attrGraphs, gb)
	}
	b = appendVarint(b, attrType, uint64(a.Type))
	return append(b, a.Unknown...), nil
}

func encodeValueInfo(v *ValueInfo) []byte {
	var b []byte
	b = appendString(b, valueInfoName, v.Name)
	switch {
	case v.OtherType != nil:
		b = appendMessage(b, valueInfoType, v.OtherType)
	case v.ElemType != Undefined || v.HasShape:
		var tt []byte
		tt = appendVarint(tt, tensorTypeElemType, uint64(v.ElemType))
		if v.HasShape {
			var sb []byte
			for _, d := range v.Shape {
				var db []byte
				switch {
				case d.Param != "":
					db = appendString(db, dimParam, d.Param)
				case d.Value >= 0:
					db = appendVarint(db, dimValue, uint64(d.Value))
				}
				sb = appendMessage(sb, shapeDim, db)
			}
			tt = appendMessage(tt, tensorTypeShape, sb)
		}
		b = appendMessage(b, valueInfoType, appendMessage(nil, typeTensorType, tt))
	}
	return append(b, v.Unknown...)
}
