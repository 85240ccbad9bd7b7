package onnx

// Model is an ONNX model (ModelProto).
//
// Unknown holds the encoded fields this package does not model (for
// example metadata_props, training_info and functions); Encode writes them
// back unchanged. The same holds for the Unknown fields of the other types.
type Model struct {
	IRVersion       int64
	ProducerName    string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	DocString       string
	Opsets          []OpsetImport
	Graph           *Graph
	Unknown         []byte
}

// OpsetImport is one operator set the model uses (OperatorSetIdProto). The
// empty Domain and "ai.onnx" both name the default operator set.
type OpsetImport struct {
	Domain  string
	Version int64
}

// Graph is a computation graph (GraphProto). Inputs may include names that
// are also Initializers (constants with a default value); see Signature.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []*Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
	ValueInfo    []ValueInfo
	Unknown      []byte
}

// Node is one operator invocation (NodeProto). An empty input name marks an
// omitted optional input.
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
	Unknown []byte
}

// AttrType is the type of an attribute value (AttributeProto.AttributeType).
type AttrType int32

// Attribute types, with the numbers onnx.proto assigns them.
const (
	AttrUndefined     AttrType = 0
	AttrFloat         AttrType = 1
	AttrInt           AttrType = 2
	AttrString        AttrType = 3
	AttrTensor        AttrType = 4
	AttrGraph         AttrType = 5
	AttrFloats        AttrType = 6
	AttrInts          AttrType = 7
	AttrStrings       AttrType = 8
	AttrTensors       AttrType = 9
	AttrGraphs        AttrType = 10
	AttrSparseTensor  AttrType = 11
	AttrSparseTensors AttrType = 12
	AttrTypeProto     AttrType = 13
	AttrTypeProtos    AttrType = 14
)

// Attr is a named attribute of a node (AttributeProto). Type says which
// value field is meaningful; values of types this package does not model
// (sparse tensors, type protos) and references to function attributes stay
// in Unknown.
type Attr struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       []byte
	T       *Tensor
	G       *Graph
	Floats  []float32
	Ints    []int64
	Strings [][]byte
	Tensors []*Tensor
	Graphs  []*Graph
	Unknown []byte
}

// Dim is one dimension of a tensor shape. A fixed dimension has Value >= 0
// and no Param; a dynamic one has Value -1 and either a symbolic name in
// Param (such as "batch") or none at all.
type Dim struct {
	Value int64
	Param string
}

// Dynamic reports whether the dimension has no fixed size.
func (d Dim) Dynamic() bool { return d.Value < 0 || d.Param != "" }

// ValueInfo names a graph input, output or intermediate value with its type
// (ValueInfoProto). For tensor types ElemType is the element type and Shape
// the dimensions when HasShape is set (a missing shape means any rank).
//
// OtherType holds the encoded TypeProto when the value is not a plain
// tensor (a sequence, map, optional or sparse tensor); ElemType is
// Undefined then and Encode writes OtherType back unchanged.
type ValueInfo struct {
	Name      string
	ElemType  DataType
	Shape     []Dim
	HasShape  bool
	OtherType []byte
	Unknown   []byte
}

// IsTensor reports whether v is a plain tensor value.
func (v ValueInfo) IsTensor() bool { return v.OtherType == nil && v.ElemType != Undefined }

// Signature is what a caller feeds a model and what it gets back.
type Signature struct {
	Inputs  []ValueInfo // graph inputs that are not initializers
	Outputs []ValueInfo
}

// Signature returns the model's inputs (excluding names that have an
// initializer) and outputs. The slices are copies; the ValueInfo values
// share Shape slices with the model.
func (m *Model) Signature() Signature {
	var s Signature
	if m == nil || m.Graph == nil {
		return s
	}
	inits := make(map[string]bool, len(m.Graph.Initializers))
	for _, t := range m.Graph.Initializers {
		inits[t.Name] = true
	}
	for _, in := range m.Graph.Inputs {
		if !inits[in.Name] {
			s.Inputs = append(s.Inputs, in)
		}
	}
	s.Outputs = append(s.Outputs, m.Graph.Outputs...)
	return s
}

// Opset returns the version of the default ("" or "ai.onnx") operator set,
// or 0 when the model imports none.
func (m *Model) Opset() int64 {
	if m == nil {
		return 0
	}
	for _, o := range m.Opsets {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			return o.Version
		}
	}
	return 0
}
