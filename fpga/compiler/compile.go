package compiler

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx"
)

// Version is part of every cache key: bump it when the generated code or
// the quantization changes.
const Version = "atelier-fpga-compiler/1"

// Options control compilation. The zero value is valid.
type Options struct {
	// Batch is the number of samples per kernel iteration; 0 means 32.
	// The compiler halves it until the layers fit the card's scratchpad.
	Batch int
	// RequireFull refuses a model that the device cannot run entirely
	// (ErrPartial) instead of splitting it.
	RequireFull bool
	// CacheDir, when set, keeps compiled artifacts on disk keyed by
	// (model digest, calibration digest, device info, compiler version,
	// options).
	CacheDir string
}

// Artifact is a compiled model: the device program for the prefix, the
// host plan around it and the CPU suffix.
type Artifact struct {
	Compiler    string
	ModelDigest string   // sha256 of the ONNX file
	Device      string   // fpga.Info.String() it was compiled for
	Image       []byte   // isa program; nil when nothing runs on the device
	Plan        *Plan    // nil when Image is nil
	Suffix      []byte   // ONNX model of the rest of the graph; nil when the device computes every output
	DeviceOps   []string // fused device layers, for people
	Unsupported []string // why the device part stops: "Softmax (node \"probs\"): operator is not supported by the device"
	Outputs     []string // the original graph outputs, in order
}

// Full reports whether the whole graph runs on the device.
func (a *Artifact) Full() bool { return a.Image != nil && a.Suffix == nil }

// Compile compiles an ONNX model for the device described by info. calib
// holds sample inputs of the graph's first input, one flattened sample
// each (see ReadCalibration). Errors wrap ErrUnsupportedModel, ErrPartial
// or ErrCalibration.
func Compile(model []byte, calib [][]float32, info fpga.Info, opts Options, log *slog.Logger) (*Artifact, error) {
	if opts.Batch <= 0 {
		opts.Batch = 32
	}
	sum := sha256.Sum256(model)
	digest := hex.EncodeToString(sum[:])
	var key string
	if opts.CacheDir != "" {
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%s\n%s\nbatch=%d full=%v\n", Version, digest, info, opts.Batch, opts.RequireFull)
		var buf []byte
		for _, s := range calib {
			buf = binary.LittleEndian.AppendUint32(buf[:0], uint32(len(s)))
			for _, v := range s {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			h.Write(buf)
		}
		key = hex.EncodeToString(h.Sum(nil))
		if a, err := loadCached(opts.CacheDir, key); err == nil {
			log.Debug("fpga compile cache hit", "key", key[:16])
			return a, nil
		}
	}
	a, err := compile(model, digest, calib, info, opts, log)
	if err != nil {
		return nil, err
	}
	if key != "" {
		if err := storeCached(opts.CacheDir, key, a); err != nil {
			log.Warn("fpga compile cache: store failed", "err", err)
		}
	}
	return a, nil
}

func compile(model []byte, digest string, calib [][]float32, info fpga.Info, opts Options, log *slog.Logger) (*Artifact, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return nil, fmt.Errorf("compile: %w: %w", ErrUnsupportedModel, err)
	}
	sig := m.Signature()
	if len(sig.Inputs) == 0 {
		return nil, fmt.Errorf("compile: %w: the graph has no inputs", ErrUnsupportedModel)
	}
	a := &Artifact{Compiler: Version, ModelDigest: digest, Device: info.String()}
	for _, o := range sig.Outputs {
		a.Outputs = append(a.Outputs, o.Name)
	}
	gi := analyze(m.Graph)
	ch, err := walk(gi, sig.Inputs[0])
	if err != nil {
		return nil, fmt.Errorf("compile: %w: %w", ErrUnsupportedModel, err)
	}
	// Drop trailing layers that produce nothing computed (flatten alone) or
	// do not fit on chip.
	layers := ch.layers
	var fitErr error
	var prog []byte
	var plan *Plan
	for len(layers) > 0 {
		if !hasCompute(layers) {
			layers = nil
			break
		}
		inMax, outMax, err := calibrate(ch, layers, calib)
		if err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		// Fewer samples per iteration may fit where more do not.
		var p *isa.Program
		var pl *Plan
		for b := opts.Batch; ; b = (b + 1) / 2 {
			p, pl, err = emit(ch, layers, info, b, inMax, outMax)
			if err == nil || b == 1 {
				break
			}
		}
		if err == nil {
			if prog, err = p.Encode(); err != nil {
				return nil, fmt.Errorf("compile: internal error: %w", err)
			}
			plan = pl
			break
		}
		l := layers[len(layers)-1]
		fitErr = fmt.Errorf("%s layer (node %q): does not fit on the card: %v", kindNames[l.kind], l.nodes[0], err)
		layers = layers[:len(layers)-1]
	}
	if fitErr != nil {
		a.Unsupported = append(a.Unsupported, fitErr.Error())
	}
	if ch.stop != nil {
		a.Unsupported = append(a.Unsupported, ch.stop.Error())
	}
	if len(layers) > 0 {
		a.Image, a.Plan = prog, plan
		all := ch.describe()
		a.DeviceOps = all[:len(all)-len(ch.layers)+len(layers)]
	}
	// Which nodes stay on the CPU.
	onDevice := map[int]bool{}
	for _, l := range layers {
		for _, i := range l.idx {
			onDevice[i] = true
		}
	}
	if len(layers) > 0 {
		for _, i := range ch.scaleIdx {
			onDevice[i] = true
		}
	}
	var cpuNodes []onnx.Node
	for i := range m.Graph.Nodes {
		if !onDevice[i] {
			cpuNodes = append(cpuNodes, m.Graph.Nodes[i])
		}
	}
	cut := ""
	if plan != nil {
		cut = plan.Output
	}
	needSuffix := false
	for _, o := range a.Outputs {
		if o != cut {
			needSuffix = true
		}
	}
	if needSuffix {
		if opts.RequireFull {
			why := "every output comes from the device chain"
			if len(a.Unsupported) > 0 {
				why = strings.Join(a.Unsupported, "; ")
			}
			return nil, fmt.Errorf("compile: %w: %s", ErrPartial, why)
		}
		if a.Suffix, err = suffixModel(m, cpuNodes, plan, sig.Inputs[0]); err != nil {
			return nil, fmt.Errorf("compile: suffix model: %w", err)
		}
		for _, n := range cpuNodes {
			if n.OpType == "Constant" {
				continue
			}
			found := false
			for _, u := range a.Unsupported {
				if strings.Contains(u, fmt.Sprintf("%q", nodeName(&n))) {
					found = true
				}
			}
			if !found {
				a.Unsupported = append(a.Unsupported, fmt.Sprintf("%s (node %q): after the device prefix", n.OpType, nodeName(&n)))
			}
		}
	}
	log.Info("fpga model compiled", "digest", digest[:12], "device_layers", len(layers), "cpu_nodes", len(cpuNodes), "full", a.Full(), "unsupported", strings.Join(a.Unsupported, "; "))
	return a, nil
}

func hasCompute(ls []*layer) bool {
	for _, l := range ls {
		if l.kind != kindFlatten {
			return true
		}
	}
	return false
}

// calibrate runs the float reference over the samples and returns the max
// |value| of the scaled input and of every layer's output.
func calibrate(ch *chain, layers []*layer, calib [][]float32) (float64, []float64, error) {
	if len(calib) == 0 {
		return 0, nil, fmt.Errorf("%w: no samples", ErrCalibration)
	}
	inMax := 0.0
	outMax := make([]float64, len(layers))
	for i, s := range calib {
		if len(s) != ch.inputShape.n {
			return 0, nil, fmt.Errorf("%w: sample %d has %d values, input %q needs %d", ErrCalibration, i+1, len(s), ch.input, ch.inputShape.n)
		}
		x := ch.apply(s)
		inMax = max(inMax, maxAbs(x))
		for li, l := range layers {
			x = forward(l, x)
			outMax[li] = max(outMax[li], maxAbs(x))
		}
	}
	return inMax, outMax, nil
}

// suffixModel builds the ONNX model of the CPU part: its inputs are the
// cut value (when the device runs) and the original inputs it reads.
func suffixModel(m *onnx.Model, nodes []onnx.Node, plan *Plan, devIn onnx.ValueInfo) ([]byte, error) {
	g := m.Graph
	used := map[string]bool{}
	for _, n := range nodes {
		for _, in := range n.Inputs {
			used[in] = true
		}
	}
	for _, o := range g.Outputs {
		used[o.Name] = true
	}
	sg := &onnx.Graph{Name: g.Name + "_cpu", Nodes: nodes, Outputs: g.Outputs}
	if plan != nil {
		shape := []onnx.Dim{devIn.Shape[0]}
		for _, d := range plan.OutputDims {
			shape = append(shape, onnx.Dim{Value: d})
		}
		sg.Inputs = append(sg.Inputs, onnx.ValueInfo{Name: plan.Output, ElemType: onnx.Float, Shape: shape, HasShape: true})
	}
	inits := map[string]bool{}
	for _, t := range g.Initializers {
		if used[t.Name] {
			sg.Initializers = append(sg.Initializers, t)
			inits[t.Name] = true
		}
	}
	for _, in := range g.Inputs {
		if used[in.Name] && (plan == nil || in.Name != plan.Output) {
			sg.Inputs = append(sg.Inputs, in)
		}
	}
	sm := *m
	sm.Graph = sg
	return sm.Encode()
}

// ReadCalibration reads calibration samples for an input of n values per
// sample: either CSV (one sample per line, comma-separated numbers; values
// beyond the first n on a line — such as a label column — are ignored) or,
// when the data starts like an ONNX TensorProto, one tensor whose first
// dimension is the sample count. At most max samples are kept (0: all).
func ReadCalibration(r io.Reader, n, maxSamples int) ([][]float32, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read calibration: %w", err)
	}
	if t, terr := onnx.DecodeTensor(b); terr == nil && len(b) > 0 && !isText(b) {
		d, ok := t.Data.([]float32)
		if !ok || n <= 0 || len(d)%n != 0 || len(d) == 0 {
			return nil, fmt.Errorf("read calibration: %w: tensor %s%v does not hold whole samples of %d FLOAT values", ErrCalibration, t.DataType, t.Dims, n)
		}
		var out [][]float32
		for i := 0; i+n <= len(d) && (maxSamples == 0 || len(out) < maxSamples); i += n {
			out = append(out, d[i:i+n])
		}
		return out, nil
	}
	var out [][]float32
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, ",")
		if len(cols) < n {
			return nil, fmt.Errorf("read calibration: %w: line %d has %d values, the input needs %d", ErrCalibration, line, len(cols), n)
		}
		s := make([]float32, n)
		for i := 0; i < n; i++ {
			v, err := strconv.ParseFloat(strings.TrimSpace(cols[i]), 32)
			if err != nil {
				return nil, fmt.Errorf("read calibration: %w: line %d column %d: %v", ErrCalibration, line, i+1, err)
			}
			s[i] = float32(v)
		}
		out = append(out, s)
		if maxSamples > 0 && len(out) == maxSamples {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read calibration: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read calibration: %w: no samples", ErrCalibration)
	}
	return out, nil
}

func isText(b []byte) bool {
	for _, c := range b[:min(len(b), 64)] {
		if !(c >= '0' && c <= '9' || c == '.' || c == ',' || c == '-' || c == '+' || c == 'e' || c == 'E' || c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '#') {
			return false
		}
	}
	return true
}

func cachePath(dir, key string) string { return filepath.Join(dir, key+".fpgac.json") }

func loadCached(dir, key string) (*Artifact, error) {
	b, err := os.ReadFile(cachePath(dir, key))
	if err != nil {
		return nil, err
	}
	var a Artifact
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, err
	}
	if a.Compiler != Version {
		return nil, errors.New("other compiler version")
	}
	return &a, nil
}

// storeCached writes the artifact to a temp file, syncs it and renames it
// into place, so a reader never sees a partial file.
func storeCached(dir, key string, a *Artifact) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), cachePath(dir, key))
}
