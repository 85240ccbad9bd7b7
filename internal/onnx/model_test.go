package onnx_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// richModel uses every modeled field: subgraphs, all attribute kinds, value
// infos with fixed, symbolic and unknown dims, a sequence-typed value.
func richModel() *onnx.Model {
	body := &onnx.Graph{
		Name:    "then",
		Nodes:   []onnx.Node{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Outputs: []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float}},
	}
	seqType := protowire.AppendTag(nil, 4, protowire.BytesType) // TypeProto.sequence_type
	seqType = protowire.AppendBytes(seqType, nil)
	return &onnx.Model{
		IRVersion:       8,
		ProducerName:    "golden",
		ProducerVersion: "1.0",
		Domain:          "ml.atelier",
		ModelVersion:    3,
		DocString:       "a model for golden tests",
		Opsets:          []onnx.OpsetImport{{Version: 13}, {Domain: "ai.onnx.ml", Version: 3}},
		Graph: &onnx.Graph{
			Name: "main",
			Nodes: []onnx.Node{
				{Name: "c", OpType: "Constant", Outputs: []string{"k"}, Attrs: []onnx.Attr{
					{Name: "value", Type: onnx.AttrTensor, T: &onnx.Tensor{DataType: onnx.Int64, Dims: []int64{2}, Data: []int64{1, -1}}},
				}},
				{Name: "attrs", OpType: "Custom", Domain: "ml.atelier", Inputs: []string{"x", "", "k"}, Outputs: []string{"z"}, Attrs: []onnx.Attr{
					{Name: "f", Type: onnx.AttrFloat, F: 0.5},
					{Name: "i", Type: onnx.AttrInt, I: -7},
					{Name: "s", Type: onnx.AttrString, S: []byte("text")},
					{Name: "fs", Type: onnx.AttrFloats, Floats: []float32{1, 2}},
					{Name: "is", Type: onnx.AttrInts, Ints: []int64{3, -4}},
					{Name: "ss", Type: onnx.AttrStrings, Strings: [][]byte{[]byte("a"), []byte("b")}},
					{Name: "ts", Type: onnx.AttrTensors, Tensors: []*onnx.Tensor{{DataType: onnx.Bool, Dims: []int64{1}, Data: []bool{true}}}},
				}},
				{Name: "if", OpType: "If", Inputs: []string{"cond"}, Outputs: []string{"out"}, Attrs: []onnx.Attr{
					{Name: "then_branch", Type: onnx.AttrGraph, G: body},
					{Name: "else_branch", Type: onnx.AttrGraph, G: body},
				}},
			},
			Initializers: []*onnx.Tensor{{Name: "w", DataType: onnx.Float, Dims: []int64{2, 2}, Data: []float32{1, 2, 3, 4}}},
			Inputs: []onnx.ValueInfo{
				{Name: "x", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{{Value: -1, Param: "batch"}, {Value: 4}, {Value: -1}}},
				{Name: "cond", ElemType: onnx.Bool, HasShape: true},
				{Name: "w", ElemType: onnx.Float, HasShape: true, Shape: []onnx.Dim{{Value: 2}, {Value: 2}}},
				{Name: "seq", OtherType: seqType},
			},
			Outputs:   []onnx.ValueInfo{{Name: "out", ElemType: onnx.Float}},
			ValueInfo: []onnx.ValueInfo{{Name: "z", ElemType: onnx.Int64, HasShape: true, Shape: []onnx.Dim{{Value: 0}}}},
		},
	}
}

// dump renders a model as stable text for golden files.
func dump(m *onnx.Model) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "ir_version %d producer %q %q domain %q model_version %d doc %q opset %d\n",
		m.IRVersion, m.ProducerName, m.ProducerVersion, m.Domain, m.ModelVersion, m.DocString, m.Opset())
	for _, o := range m.Opsets {
		fmt.Fprintf(&sb, "opset_import %q %d\n", o.Domain, o.Version)
	}
	dumpGraph(&sb, m.Graph, "")
	sig := m.Signature()
	for _, v := range sig.Inputs {
		fmt.Fprintf(&sb, "signature input %s\n", vi(v))
	}
	for _, v := range sig.Outputs {
		fmt.Fprintf(&sb, "signature output %s\n", vi(v))
	}
	return sb.String()
}

func vi(v onnx.ValueInfo) string {
	if !v.IsTensor() {
		return fmt.Sprintf("%s other(%x)", v.Name, v.OtherType)
	}
	s := fmt.Sprintf("%s %s", v.Name, v.ElemType)
	if v.HasShape {
		var ds []string
		for _, d := range v.Shape {
			switch {
			case d.Param != "":
				ds = append(ds, d.Param)
			case d.Value < 0:
				ds = append(ds, "?")
			default:
				ds = append(ds, fmt.Sprint(d.Value))
			}
		}
		s += " [" + strings.Join(ds, ",") + "]"
	}
	return s
}

func dumpGraph(sb *strings.Builder, g *onnx.Graph, indent string) {
	fmt.Fprintf(sb, "%sgraph %q\n", indent, g.Name)
	for _, t := range g.Initializers {
		fmt.Fprintf(sb, "%s  initializer %q %s %v %v\n", indent, t.Name, t.DataType, t.Dims, t.Data)
	}
	for _, v := range g.Inputs {
		fmt.Fprintf(sb, "%s  input %s\n", indent, vi(v))
	}
	for _, v := range g.Outputs {
		fmt.Fprintf(sb, "%s  output %s\n", indent, vi(v))
	}
	for _, v := range g.ValueInfo {
		fmt.Fprintf(sb, "%s  value_info %s\n", indent, vi(v))
	}
	for _, n := range g.Nodes {
		fmt.Fprintf(sb, "%s  node %q %s domain %q %q -> %q\n", indent, n.Name, n.OpType, n.Domain, n.Inputs, n.Outputs)
		for _, a := range n.Attrs {
			fmt.Fprintf(sb, "%s    attr %q type %d f %g i %d s %q floats %v ints %v strings %q", indent, a.Name, a.Type, a.F, a.I, a.S, a.Floats, a.Ints, a.Strings)
			if a.T != nil {
				fmt.Fprintf(sb, " t %s %v %v", a.T.DataType, a.T.Dims, a.T.Data)
			}
			for _, t := range a.Tensors {
				fmt.Fprintf(sb, " tensors %s %v %v", t.DataType, t.Dims, t.Data)
			}
			sb.WriteString("\n")
			if a.G != nil {
				dumpGraph(sb, a.G, indent+"      ")
			}
		}
	}
}

// TestGolden encodes models built in Go and compares the bytes and a text
// dump of their decoding with files in testdata/. Run with -update after an
// intended change.
func TestGolden(t *testing.T) {
	cases := map[string]*onnx.Model{
		"rich": richModel(),
		"mlp":  onnxtest.MLPModel(3, []int{4}, 2, 1),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := onnx.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			text := dump(got)
			if text != dump(m) {
				t.Errorf("decode(encode(m)) differs from m:\n%s\nwant\n%s", text, dump(m))
			}
			onnxPath := filepath.Join("testdata", name+".onnx")
			textPath := filepath.Join("testdata", name+".txt")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(onnxPath, b, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(textPath, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantB, err := os.ReadFile(onnxPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(b, wantB) {
				t.Errorf("encoding differs from %s", onnxPath)
			}
			wantText, err := os.ReadFile(textPath)
			if err != nil {
				t.Fatal(err)
			}
			if text != string(wantText) {
				t.Errorf("dump differs from %s:\n%s", textPath, text)
			}
		})
	}
}

func TestSignatureAndOpset(t *testing.T) {
	m := richModel()
	sig := m.Signature()
	var names []string
	for _, v := range sig.Inputs {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, ","); got != "x,cond,seq" {
		t.Errorf("signature inputs %s, want x,cond,seq (w is an initializer)", got)
	}
	if len(sig.Outputs) != 1 || sig.Outputs[0].Name != "out" {
		t.Errorf("signature outputs %+v", sig.Outputs)
	}
	if m.Opset() != 13 {
		t.Errorf("Opset() = %d, want 13", m.Opset())
	}
	m.Opsets = []onnx.OpsetImport{{Domain: "ai.onnx.ml", Version: 2}, {Domain: "ai.onnx", Version: 17}}
	if m.Opset() != 17 {
		t.Errorf("Opset() with ai.onnx domain = %d, want 17", m.Opset())
	}
	m.Opsets = nil
	if m.Opset() != 0 {
		t.Errorf("Opset() without imports = %d, want 0", m.Opset())
	}
}

func TestDecodeKeepsUnknownFields(t *testing.T) {
	b, err := richModel().Encode()
	if err != nil {
		t.Fatal(err)
	}
	// metadata_props (14) {key: "k", value: "v"}
	prop := protowire.AppendTag(nil, 1, protowire.BytesType)
	prop = protowire.AppendString(prop, "k")
	prop = protowire.AppendTag(prop, 2, protowire.BytesType)
	prop = protowire.AppendString(prop, "v")
	b = protowire.AppendTag(b, 14, protowire.BytesType)
	b = protowire.AppendBytes(b, prop)
	m, err := onnx.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(enc, prop) {
		t.Error("metadata_props was lost on Decode→Encode")
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := richModel().Encode()
	if err != nil {
		t.Fatal(err)
	}
	noGraph := protowire.AppendTag(nil, 1, protowire.VarintType)
	noGraph = protowire.AppendVarint(noGraph, 8)
	// An initializer with data_location EXTERNAL.
	var tb []byte
	tb = protowire.AppendTag(tb, 2, protowire.VarintType)
	tb = protowire.AppendVarint(tb, 1)
	tb = protowire.AppendTag(tb, 14, protowire.VarintType)
	tb = protowire.AppendVarint(tb, 1)
	var gb []byte
	gb = protowire.AppendTag(gb, 5, protowire.BytesType)
	gb = protowire.AppendBytes(gb, tb)
	ext := append(append([]byte{}, noGraph...), protowire.AppendTag(nil, 7, protowire.BytesType)...)
	ext = protowire.AppendBytes(ext, gb)

	cases := []struct {
		name    string
		in      []byte
		is      error
		message string // DecodeError.Message
		field   string
	}{
		{"empty", nil, onnx.ErrMalformed, "ModelProto", ""},
		{"text", []byte("hello, world\n"), onnx.ErrMalformed, "ModelProto", ""},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), onnx.ErrMalformed, "ModelProto", ""},
		{"json", []byte(`{"ir_version": 8}`), onnx.ErrMalformed, "ModelProto", ""},
		{"no graph", noGraph, onnx.ErrMalformed, "ModelProto", "graph"},
		{"truncated", valid[:len(valid)-3], onnx.ErrMalformed, "", ""},
		{"external data", ext, onnx.ErrExternalData, "TensorProto", ""},
		{"graph as varint", append(append([]byte{}, noGraph...), 0x38, 0x01), onnx.ErrMalformed, "ModelProto", "graph"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnx.Decode(c.in)
			if !errors.Is(err, c.is) {
				t.Fatalf("Decode = %v, %v; want %v", m, err, c.is)
			}
			var de *onnx.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *onnx.DecodeError", err)
			}
			if c.message != "" && de.Message != c.message {
				t.Errorf("message %q, want %q (%v)", de.Message, c.message, err)
			}
			if c.field != "" && de.Field != c.field {
				t.Errorf("field %q, want %q (%v)", de.Field, c.field, err)
			}
			if !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q does not give an offset", err)
			}
		})
	}
}

func TestDecodeErrorOffsetPointsIntoNestedMessage(t *testing.T) {
	b, err := onnxtest.MLPModel(2, nil, 2, 1).Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the dims of the first initializer: find its raw_data and
	// shorten the tensor's declared element count by rewriting dims [2 2]
	// to [2 3].
	i := bytes.Index(b, []byte{0x0a, 0x02, 0x02, 0x02, 0x10, 0x01})
	if i < 0 {
		t.Fatal("initializer dims not found in the encoding")
	}
	b = bytes.Clone(b)
	b[i+3] = 3
	_, err = onnx.Decode(b)
	var de *onnx.DecodeError
	if !errors.As(err, &de) || !errors.Is(err, onnx.ErrMalformed) {
		t.Fatalf("err = %v, want a malformed *DecodeError", err)
	}
	if de.Message != "TensorProto" || de.Offset <= i {
		t.Errorf("error at %s offset %d, want TensorProto after offset %d: %v", de.Message, de.Offset, i, err)
	}
	if !strings.Contains(err.Error(), `"w0"`) || !strings.Contains(err.Error(), "[2 3]") {
		t.Errorf("error %q does not name the tensor and its dims", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	if _, err := (&onnx.Model{IRVersion: 8}).Encode(); !errors.Is(err, onnx.ErrInvalid) {
		t.Errorf("model without graph: err = %v, want ErrInvalid", err)
	}
	m := &onnx.Model{IRVersion: 8, Graph: &onnx.Graph{Initializers: []*onnx.Tensor{{Name: "bad", DataType: onnx.Float, Dims: []int64{2}, Data: []float32{1}}}}}
	if _, err := m.Encode(); !errors.Is(err, onnx.ErrInvalid) || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("bad initializer: err = %v, want ErrInvalid naming the tensor", err)
	}
}

func BenchmarkDecode1MB(b *testing.B) {
	data := onnxtest.MLP(256, []int{512, 256}, 10, 1)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := onnx.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode1MB(b *testing.B) {
	m, err := onnx.Decode(onnxtest.MLP(256, []int{512, 256}, 10, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}
