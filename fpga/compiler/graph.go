package compiler

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/atelier-ml/atelier/internal/onnx"
)

// layerKind is a device layer after fusion.
type layerKind int

const (
	kindDense   layerKind = iota // y = x·W + b (Gemm, MatMul, + Add), optional ReLU
	kindConv                     // 2-D convolution (+ BatchNormalization, Add), optional ReLU
	kindMaxPool                  // 2-D max pooling
	kindAvgPool                  // 2-D average pooling
	kindFlatten                  // image → rows (Flatten, Reshape); no device instruction
)

var kindNames = [...]string{"dense", "conv", "maxpool", "avgpool", "flatten"}

// shape is the per-sample shape of a device tensor: rows of N features, or
// a C×H×W image.
type shape struct {
	image   bool
	n       int // features (rows) — or C·H·W for images
	c, h, w int
}

func (s shape) dims() []int64 {
	if s.image {
		return []int64{int64(s.c), int64(s.h), int64(s.w)}
	}
	return []int64{int64(s.n)}
}

func rows(n int) shape        { return shape{n: n} }
func image(c, h, w int) shape { return shape{image: true, n: c * h * w, c: c, h: h, w: w} }
func (s shape) String() string {
	if s.image {
		return fmt.Sprintf("%dx%dx%d", s.c, s.h, s.w)
	}
	return fmt.Sprint(s.n)
}

// layer is one fused device layer with float parameters.
type layer struct {
	kind   layerKind
	nodes  []string // ONNX nodes fused into it
	idx    []int    // their indices in the graph
	output string   // ONNX value it produces
	in     shape
	out    shape
	relu   bool

	// dense: w[k*N+n] (K = in.n, N = out.n); conv: w[((o*Cin+i)*KH+a)*KW+b]
	w, b []float64
	// conv and pool geometry
	kh, kw, sh, sw, pt, pl, dh, dw int
	countPad                       bool
	// flatten before dense: the dense input comes from an HWC image of this shape
	fromImage *shape
}

// attrs indexes a node's attributes.
type attrs map[string]onnx.Attr

func attrsOf(n *onnx.Node) attrs {
	m := attrs{}
	for _, a := range n.Attrs {
		m[a.Name] = a
	}
	return m
}

func (a attrs) int(name string, def int64) int64 {
	if v, ok := a[name]; ok {
		return v.I
	}
	return def
}

func (a attrs) float(name string, def float64) float64 {
	if v, ok := a[name]; ok {
		return float64(v.F)
	}
	return def
}

func (a attrs) ints(name string) []int64 {
	if v, ok := a[name]; ok {
		return v.Ints
	}
	return nil
}

func (a attrs) str(name, def string) string {
	if v, ok := a[name]; ok {
		return string(v.S)
	}
	return def
}

// constant is an initializer or Constant-node value as float64.
type constant struct {
	dims []int64
	data []float64
}

func toFloat64(t *onnx.Tensor) ([]float64, bool) {
	switch d := t.Data.(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out, true
	case []float64:
		return slices.Clone(d), true
	case []int64:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out, true
	case []int32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out, true
	}
	return nil, false
}

// graphInfo is what the partitioner needs to know about a graph.
type graphInfo struct {
	g         *onnx.Graph
	consts    map[string]constant
	consumers map[string][]int // value → indices of nodes reading it
	outputs   map[string]bool
}

func analyze(g *onnx.Graph) *graphInfo {
	gi := &graphInfo{g: g, consts: map[string]constant{}, consumers: map[string][]int{}, outputs: map[string]bool{}}
	for _, t := range g.Initializers {
		if d, ok := toFloat64(t); ok {
			gi.consts[t.Name] = constant{dims: t.Dims, data: d}
		}
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if n.OpType == "Constant" && (n.Domain == "" || n.Domain == "ai.onnx") && len(n.Outputs) == 1 {
			if a, ok := attrsOf(n)["value"]; ok && a.T != nil {
				if d, ok := toFloat64(a.T); ok {
					gi.consts[n.Outputs[0]] = constant{dims: a.T.Dims, data: d}
				}
			}
		}
		for _, in := range n.Inputs {
			if in != "" {
				gi.consumers[in] = append(gi.consumers[in], i)
			}
		}
	}
	for _, o := range g.Outputs {
		gi.outputs[o.Name] = true
	}
	return gi
}

// unsupportedError says why the chain stops at a node.
type unsupportedError struct {
	node   string
	op     string
	reason string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("%s (node %q): %s", e.op, e.node, e.reason)
}

func nodeName(n *onnx.Node) string {
	if n.Name != "" {
		return n.Name
	}
	if len(n.Outputs) > 0 {
		return n.Outputs[0]
	}
	return "?"
}

// chain is the result of walking the graph from its input.
type chain struct {
	input      string
	inputShape shape
	scale      float64 // folded leading positive scalar Mul/Div: device input = x·scale
	pre        *affine // folded leading elementwise Mul/Div/Add/Sub, when not just a scale
	scaleNodes []string
	scaleIdx   []int
	layers     []*layer
	stop       error
}

// affine is a per-element input transform x·mul + add (per-sample ONNX
// order).
type affine struct{ mul, add []float64 }

// affine returns the chain's input transform as vectors, creating them
// from the scalar scale on first use.
func (ch *chain) affine() *affine {
	if ch.pre == nil {
		n := ch.inputShape.n
		ch.pre = &affine{mul: make([]float64, n), add: make([]float64, n)}
		for i := range ch.pre.mul {
			ch.pre.mul[i] = ch.scale
		}
		ch.scale = 1
	}
	return ch.pre
}

// apply transforms one sample.
func (ch *chain) apply(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		if ch.pre != nil {
			out[i] = float64(v)*ch.pre.mul[i] + ch.pre.add[i]
		} else {
			out[i] = float64(v) * ch.scale
		}
	}
	return out
}

// broadcast expands a constant to one value per element of a sample,
// following ONNX (numpy) broadcasting against [1, sample dims...].
func broadcast(c constant, s shape) ([]float64, error) {
	dims := append([]int64{1}, s.dims()...)
	if len(c.dims) > len(dims) {
		return nil, fmt.Errorf("constant of dims %v has more dimensions than the input [batch %v]", c.dims, s.dims())
	}
	cd := make([]int64, len(dims))
	for i := range cd {
		cd[i] = 1
	}
	copy(cd[len(dims)-len(c.dims):], c.dims)
	if cd[0] != 1 {
		return nil, fmt.Errorf("constant of dims %v varies along the batch", c.dims)
	}
	for i := 1; i < len(dims); i++ {
		if cd[i] != 1 && cd[i] != dims[i] {
			return nil, fmt.Errorf("constant of dims %v does not broadcast to [batch %v]", c.dims, s.dims())
		}
	}
	out := make([]float64, s.n)
	idx := make([]int64, len(dims)-1)
	for e := range out {
		// e in per-sample row-major order; the constant index skips broadcast dims.
		r := int64(e)
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d] = r % dims[d+1]
			r /= dims[d+1]
		}
		ci := int64(0)
		for d := range idx {
			v := idx[d]
			if cd[d+1] == 1 {
				v = 0
			}
			ci = ci*cd[d+1] + v
		}
		out[e] = c.data[ci]
	}
	return out, nil
}

// walk follows the single-consumer chain from the graph's first input and
// lowers every node it can; it stops at the first node it cannot place.
func walk(gi *graphInfo, input onnx.ValueInfo) (*chain, error) {
	ch := &chain{input: input.Name, scale: 1}
	if input.ElemType != onnx.Float || !input.HasShape || len(input.Shape) < 2 {
		return nil, fmt.Errorf("input %q: want a FLOAT tensor of known rank >= 2 (batch first), got %s with %d dims", input.Name, input.ElemType, len(input.Shape))
	}
	var dims []int
	for i, d := range input.Shape[1:] {
		if d.Dynamic() {
			return nil, fmt.Errorf("input %q: dimension %d is dynamic; only the first (batch) may be", input.Name, i+1)
		}
		dims = append(dims, int(d.Value))
	}
	switch len(dims) {
	case 1:
		ch.inputShape = rows(dims[0])
	case 3:
		ch.inputShape = image(dims[0], dims[1], dims[2])
	default:
		return nil, fmt.Errorf("input %q: per-sample rank %d, want 1 (features) or 3 (C, H, W)", input.Name, len(dims))
	}
	cur, curShape := input.Name, ch.inputShape
	var last *layer // the layer that produced cur, while it may still absorb Add/BN/Relu
	for {
		if gi.outputs[cur] && cur != input.Name {
			return ch, nil
		}
		cons := gi.consumers[cur]
		if len(cons) != 1 {
			if len(cons) > 1 {
				n := &gi.g.Nodes[cons[0]]
				ch.stop = &unsupportedError{node: nodeName(n), op: n.OpType, reason: fmt.Sprintf("value %q has %d consumers; the device runs a single chain", cur, len(cons))}
			}
			return ch, nil
		}
		idx := cons[0]
		n := &gi.g.Nodes[idx]
		next, nshape, absorbed, err := lower(gi, ch, n, cur, curShape, last)
		if err != nil {
			ch.stop = err
			return ch, nil
		}
		if absorbed {
			last.nodes = append(last.nodes, nodeName(n))
			last.idx = append(last.idx, idx)
			last.output = n.Outputs[0]
		} else if next != nil {
			next.nodes = append(next.nodes, nodeName(n))
			next.idx = append(next.idx, idx)
			next.output = n.Outputs[0]
			ch.layers = append(ch.layers, next)
			last = next
		} else {
			ch.scaleNodes = append(ch.scaleNodes, nodeName(n))
			ch.scaleIdx = append(ch.scaleIdx, idx)
		}
		cur, curShape = n.Outputs[0], nshape
	}
}

// lower places node n, which reads cur. It returns a new layer, or
// absorbed=true when n was fused into last, or neither for a folded scale.
func lower(gi *graphInfo, ch *chain, n *onnx.Node, cur string, s shape, last *layer) (*layer, shape, bool, error) {
	un := func(format string, args ...any) error {
		return &unsupportedError{node: nodeName(n), op: n.OpType, reason: fmt.Sprintf(format, args...)}
	}
	fail := func(err error) (*layer, shape, bool, error) { return nil, s, false, err }
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return fail(un("operator domain %q is not supported", n.Domain))
	}
	if len(n.Outputs) != 1 {
		return fail(un("%d outputs; the device supports one", len(n.Outputs)))
	}
	a := attrsOf(n)
	// constArg returns the constant that is input i.
	constArg := func(i int) (constant, error) {
		if i >= len(n.Inputs) || n.Inputs[i] == "" {
			return constant{}, un("input %d is missing", i)
		}
		c, ok := gi.consts[n.Inputs[i]]
		if !ok {
			return constant{}, un("input %q is not a constant FLOAT initializer", n.Inputs[i])
		}
		return c, nil
	}
	binary := n.OpType == "Mul" || n.OpType == "Add" || n.OpType == "Sub" || n.OpType == "Div"
	if len(n.Inputs) == 0 || n.Inputs[0] != cur {
		if !binary || len(n.Inputs) < 2 || n.Inputs[1] != cur {
			return fail(un("reads %q as a later input; the device chain must be the first", cur))
		}
	}
	fusable := last != nil && (last.kind == kindDense || last.kind == kindConv) && !last.relu
	// Leading elementwise arithmetic with constants folds into the host's
	// input quantization: x' = x·mul + add.
	if binary && len(ch.layers) == 0 {
		if len(n.Inputs) != 2 {
			return fail(un("%d inputs, want 2", len(n.Inputs)))
		}
		other, swapped := 1, n.Inputs[0] != cur
		if swapped {
			other = 0
		}
		c, err := constArg(other)
		if err != nil {
			return fail(err)
		}
		vec, err := broadcast(c, ch.inputShape)
		if err != nil {
			return fail(un("%v", err))
		}
		if n.OpType == "Div" && swapped {
			return fail(un("a constant divided by the input is not supported"))
		}
		if n.OpType == "Mul" || n.OpType == "Div" {
			if len(c.data) == 1 && ch.pre == nil {
				k := c.data[0]
				if n.OpType == "Div" {
					k = 1 / k
				}
				if k > 0 && !math.IsInf(k, 0) && !math.IsNaN(k) {
					ch.scale *= k // a positive scalar folds into the quantization scale
					return nil, s, false, nil
				}
			}
		}
		pre := ch.affine()
		for i, v := range vec {
			switch {
			case n.OpType == "Mul":
				pre.mul[i] *= v
				pre.add[i] *= v
			case n.OpType == "Div":
				pre.mul[i] /= v
				pre.add[i] /= v
			case n.OpType == "Add":
				pre.add[i] += v
			case n.OpType == "Sub" && !swapped:
				pre.add[i] -= v
			default: // constant − x
				pre.mul[i], pre.add[i] = -pre.mul[i], v-pre.add[i]
			}
			if math.IsInf(pre.mul[i], 0) || math.IsNaN(pre.mul[i]) || math.IsInf(pre.add[i], 0) || math.IsNaN(pre.add[i]) {
				return fail(un("the folded input transform is not finite at element %d", i))
			}
		}
		return nil, s, false, nil
	}
	switch n.OpType {
	case "Mul", "Div", "Sub":
		return fail(un("only leading elementwise arithmetic with constants is supported"))
	case "Relu":
		if fusable {
			last.relu = true
			return nil, s, true, nil
		}
		// ReLU commutes with max pooling and flattening: move it back onto
		// the Gemm/MatMul/Conv before them.
		for i := len(ch.layers) - 1; i >= 0; i-- {
			l := ch.layers[i]
			if l.kind == kindMaxPool || l.kind == kindFlatten {
				continue
			}
			if l.kind == kindDense || l.kind == kindConv {
				l.relu = true // ReLU is idempotent: a second one changes nothing
				return nil, s, true, nil
			}
			break
		}
		return fail(un("ReLU is fused into a preceding Gemm, MatMul or Conv (possibly across MaxPool and Flatten) only"))
	case "Add":
		if !fusable {
			return fail(un("Add is supported only as a constant bias after Gemm, MatMul or Conv"))
		}
		other := 1
		if n.Inputs[0] != cur {
			other = 0
		}
		c, err := constArg(other)
		if err != nil {
			return fail(err)
		}
		nch := last.out.n
		if last.kind == kindConv {
			nch = last.out.c
		}
		ok := len(c.data) == 1 || len(c.data) == nch
		if last.kind == kindConv && len(c.data) == nch && nch > 1 {
			// must broadcast over H, W: dims [C,1,1] or [1,C,1,1]
			d := c.dims
			ok = len(d) >= 3 && d[len(d)-1] == 1 && d[len(d)-2] == 1
		}
		if !ok {
			return fail(un("bias of dims %v does not broadcast per channel over %d channels", c.dims, nch))
		}
		for j := range last.b {
			last.b[j] += c.data[j%len(c.data)]
		}
		return nil, s, true, nil
	case "Gemm", "MatMul":
		if s.image {
			return fail(un("input is an image (%s); flatten it first", s))
		}
		c, err := constArg(1)
		if err != nil {
			return fail(err)
		}
		if len(c.dims) != 2 {
			return fail(un("weight of rank %d, want 2", len(c.dims)))
		}
		transB, alpha, beta := false, 1.0, 1.0
		if n.OpType == "Gemm" {
			if a.int("transA", 0) != 0 {
				return fail(un("transA=1 is not supported"))
			}
			transB = a.int("transB", 0) != 0
			alpha, beta = a.float("alpha", 1), a.float("beta", 1)
		} else if len(n.Inputs) != 2 {
			return fail(un("MatMul has %d inputs, want 2", len(n.Inputs)))
		}
		K, N := int(c.dims[0]), int(c.dims[1])
		if transB {
			K, N = N, K
		}
		if K != s.n {
			return fail(un("weight is %dx%d, input has %d features", K, N, s.n))
		}
		l := &layer{kind: kindDense, in: s, out: rows(N), w: make([]float64, K*N), b: make([]float64, N)}
		for k := 0; k < K; k++ {
			for j := 0; j < N; j++ {
				v := c.data[k*N+j]
				if transB {
					v = c.data[j*K+k]
				}
				l.w[k*N+j] = alpha * v
			}
		}
		if n.OpType == "Gemm" && len(n.Inputs) > 2 && n.Inputs[2] != "" {
			bc, err := constArg(2)
			if err != nil {
				return fail(err)
			}
			if len(bc.data) != 1 && len(bc.data) != N {
				return fail(un("bias of dims %v, want a scalar or %d values", bc.dims, N))
			}
			for j := range l.b {
				l.b[j] = beta * bc.data[j%len(bc.data)]
			}
		}
		if last != nil && last.kind == kindFlatten {
			l.fromImage = last.fromImage
		}
		return l, l.out, false, nil
	case "Conv":
		if !s.image {
			return fail(un("input is not a C×H×W image"))
		}
		wc, err := constArg(1)
		if err != nil {
			return fail(err)
		}
		if len(wc.dims) != 4 {
			return fail(un("weight of rank %d; only 2-D convolution is supported", len(wc.dims)))
		}
		if g := a.int("group", 1); g != 1 {
			return fail(un("group=%d; only group=1 is supported", g))
		}
		cout, cin, kh, kw := int(wc.dims[0]), int(wc.dims[1]), int(wc.dims[2]), int(wc.dims[3])
		if cin != s.c {
			return fail(un("weight has %d input channels, input has %d", cin, s.c))
		}
		l := &layer{kind: kindConv, in: s, kh: kh, kw: kw, w: slices.Clone(wc.data), b: make([]float64, cout)}
		if err := geometry(l, a, s, true, un); err != nil {
			return fail(err)
		}
		l.out = image(cout, l.out.h, l.out.w)
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			bc, err := constArg(2)
			if err != nil {
				return fail(err)
			}
			if len(bc.data) != cout {
				return fail(un("bias has %d values, want %d", len(bc.data), cout))
			}
			copy(l.b, bc.data)
		}
		return l, l.out, false, nil
	case "BatchNormalization":
		if last == nil || last.kind != kindConv || last.relu {
			return fail(un("BatchNormalization is folded into a directly preceding Conv only"))
		}
		if a.int("training_mode", 0) != 0 {
			return fail(un("training_mode=1"))
		}
		var p [4]constant
		for i := range p {
			c, err := constArg(i + 1)
			if err != nil {
				return fail(err)
			}
			if len(c.data) != last.out.c {
				return fail(un("parameter %d has %d values, want %d", i+1, len(c.data), last.out.c))
			}
			p[i] = c
		}
		eps := a.float("epsilon", 1e-5)
		per := len(last.w) / last.out.c
		for o := 0; o < last.out.c; o++ {
			f := p[0].data[o] / math.Sqrt(p[3].data[o]+eps)
			for i := 0; i < per; i++ {
				last.w[o*per+i] *= f
			}
			last.b[o] = (last.b[o]-p[2].data[o])*f + p[1].data[o]
		}
		return nil, s, true, nil
	case "MaxPool", "AveragePool":
		if !s.image {
			return fail(un("input is not a C×H×W image"))
		}
		k := a.ints("kernel_shape")
		if len(k) != 2 {
			return fail(un("kernel_shape %v; only 2-D pooling is supported", k))
		}
		if a.int("ceil_mode", 0) != 0 && n.OpType == "AveragePool" && a.int("count_include_pad", 0) != 0 {
			return fail(un("ceil_mode=1 with count_include_pad=1 is not supported"))
		}
		if a.int("storage_order", 0) != 0 {
			return fail(un("storage_order=1 is not supported"))
		}
		if d := a.ints("dilations"); len(d) > 0 && (d[0] != 1 || d[1] != 1) {
			return fail(un("dilations %v are not supported for pooling", d))
		}
		l := &layer{kind: kindMaxPool, in: s, kh: int(k[0]), kw: int(k[1])}
		if n.OpType == "AveragePool" {
			l.kind = kindAvgPool
			l.countPad = a.int("count_include_pad", 0) != 0
		}
		if err := geometry(l, a, s, false, un); err != nil {
			return fail(err)
		}
		l.out = image(s.c, l.out.h, l.out.w)
		return l, l.out, false, nil
	case "Flatten", "Reshape":
		if n.OpType == "Flatten" {
			if ax := a.int("axis", 1); ax != 1 {
				return fail(un("axis=%d; only axis=1 (keep the batch) is supported", ax))
			}
		} else {
			c, err := constArg(1)
			if err != nil {
				return fail(err)
			}
			ok := len(c.data) == 2 && (c.data[0] == 0 || c.data[0] == -1) && (c.data[1] == -1 || int(c.data[1]) == s.n) && !(c.data[0] == -1 && c.data[1] == -1)
			if !ok {
				return fail(un("shape %v; only [batch, features] reshapes (e.g. [0, -1]) are supported", c.data))
			}
		}
		l := &layer{kind: kindFlatten, in: s, out: rows(s.n)}
		if s.image {
			img := s
			l.fromImage = &img
		}
		return l, l.out, false, nil
	}
	return fail(un("operator is not supported by the device"))
}

// geometry reads strides, pads, dilations and auto_pad and sets the
// output size of a conv or pool layer.
func geometry(l *layer, a attrs, s shape, conv bool, un func(string, ...any) error) error {
	l.sh, l.sw, l.dh, l.dw = 1, 1, 1, 1
	if st := a.ints("strides"); len(st) == 2 {
		l.sh, l.sw = int(st[0]), int(st[1])
	} else if len(st) != 0 {
		return un("strides %v", st)
	}
	if conv {
		if d := a.ints("dilations"); len(d) == 2 {
			l.dh, l.dw = int(d[0]), int(d[1])
		}
		if ks := a.ints("kernel_shape"); len(ks) == 2 && (int(ks[0]) != l.kh || int(ks[1]) != l.kw) {
			return un("kernel_shape %v disagrees with the weight", ks)
		}
	}
	if l.sh < 1 || l.sw < 1 || l.dh < 1 || l.dw < 1 || l.kh < 1 || l.kw < 1 {
		return un("non-positive kernel, stride or dilation")
	}
	ekh, ekw := l.dh*(l.kh-1)+1, l.dw*(l.kw-1)+1
	var pt, pl, pb, pr int
	switch ap := a.str("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
		if p := a.ints("pads"); len(p) == 4 {
			pt, pl, pb, pr = int(p[0]), int(p[1]), int(p[2]), int(p[3])
		} else if len(p) != 0 {
			return un("pads %v", p)
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		oh, ow := (s.h+l.sh-1)/l.sh, (s.w+l.sw-1)/l.sw
		th := max((oh-1)*l.sh+ekh-s.h, 0)
		tw := max((ow-1)*l.sw+ekw-s.w, 0)
		pt, pl = th/2, tw/2
		if ap == "SAME_LOWER" {
			pt, pl = th-th/2, tw-tw/2
		}
		pb, pr = th-pt, tw-pl
	default:
		return un("auto_pad %q", ap)
	}
	if pt < 0 || pl < 0 || pb < 0 || pr < 0 || pt >= ekh || pl >= ekw || pb >= ekh || pr >= ekw {
		return un("pads %d,%d,%d,%d must be non-negative and smaller than the window", pt, pl, pb, pr)
	}
	oh := (s.h+pt+pb-ekh)/l.sh + 1
	ow := (s.w+pl+pr-ekw)/l.sw + 1
	if !conv && a.int("ceil_mode", 0) != 0 {
		// Round up, but the last window must start inside the input or
		// its leading padding (the windows past the end average or max
		// only the positions that exist).
		oh = (s.h+pt+pb-ekh+l.sh-1)/l.sh + 1
		ow = (s.w+pl+pr-ekw+l.sw-1)/l.sw + 1
		if (oh-1)*l.sh >= s.h+pt {
			oh--
		}
		if (ow-1)*l.sw >= s.w+pl {
			ow--
		}
	}
	if oh < 1 || ow < 1 {
		return un("window larger than the padded input")
	}
	l.pt, l.pl = pt, pl
	l.out = shape{h: oh, w: ow}
	return nil
}

// describe lists a chain's layers for logs and the artifact.
func (ch *chain) describe() []string {
	var out []string
	if len(ch.scaleNodes) > 0 {
		if ch.pre != nil {
			out = append(out, fmt.Sprintf("input transform x·a+b (%s)", strings.Join(ch.scaleNodes, ", ")))
		} else {
			out = append(out, fmt.Sprintf("scale x%g (%s)", ch.scale, strings.Join(ch.scaleNodes, ", ")))
		}
	}
	for _, l := range ch.layers {
		kind := kindNames[l.kind]
		relu := ""
		if l.relu {
			relu = "+relu"
		}
		out = append(out, fmt.Sprintf("%s%s %s→%s (%s)", kind, relu, l.in, l.out, strings.Join(l.nodes, ", ")))
	}
	return out
}
