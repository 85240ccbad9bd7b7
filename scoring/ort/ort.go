package ort

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/atelier-ml/atelier/internal/ortlib"
	"github.com/atelier-ml/atelier/scoring"
)

// Config holds the session options. The zero value is valid.
type Config struct {
	// LibraryPath is the ONNX Runtime shared library; empty means
	// $ATELIER_ORT_LIB, then the setup step's cache (see ortlib.Find).
	LibraryPath string
	// IntraOpThreads and InterOpThreads size ONNX Runtime's thread pools;
	// 0 means 1 on machines with at most 2 CPUs, else ONNX Runtime's default.
	IntraOpThreads int
	InterOpThreads int
	// Spinning lets idle pool threads spin (lower latency, burns CPU). Off
	// by default: on small devices the cores are needed elsewhere.
	Spinning bool
}

var _ scoring.Runner = (*Runner)(nil)

// Runner is one ONNX Runtime session. Close releases it; Run must not be
// called during or after Close (the registry guarantees this by draining).
type Runner struct {
	sess      *ortgo.DynamicAdvancedSession
	sig       scoring.Signature
	path      string
	log       *slog.Logger
	scalarOut []bool // outputs of rank 0, preallocated per run (onnxruntime_go cannot wrap them)
}

// Open loads the model at path. Errors wrap scoring.ErrUnsupported when the
// model has non-tensor inputs or outputs or element types outside
// scoring.DataType.
func Open(path string, cfg Config, log *slog.Logger) (*Runner, error) {
	if _, err := ortlib.Init(cfg.LibraryPath); err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	opts, err := sessionOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	defer opts.Destroy()
	ins, outs, err := ortgo.GetInputOutputInfoWithOptions(path, opts)
	if err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	if len(ins) == 0 || len(outs) == 0 {
		return nil, fmt.Errorf("open model %q: %d inputs and %d outputs: %w (onnxruntime_go needs at least one of each)", path, len(ins), len(outs), scoring.ErrUnsupported)
	}
	sig := scoring.Signature{}
	if sig.Inputs, err = specs("input", ins); err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	if sig.Outputs, err = specs("output", outs); err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	inNames := make([]string, len(ins))
	for i, in := range ins {
		inNames[i] = in.Name
	}
	outNames := make([]string, len(outs))
	scalarOut := make([]bool, len(outs))
	for i, o := range outs {
		outNames[i] = o.Name
		scalarOut[i] = len(o.Dimensions) == 0
	}
	sess, err := ortgo.NewDynamicAdvancedSession(path, inNames, outNames, opts)
	if err != nil {
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	log.Debug("onnx model opened", "path", path, "inputs", len(ins), "outputs", len(outs))
	return &Runner{sess: sess, sig: sig, path: path, log: log, scalarOut: scalarOut}, nil
}

func sessionOptions(cfg Config) (*ortgo.SessionOptions, error) {
	opts, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	intra, inter := cfg.IntraOpThreads, cfg.InterOpThreads
	if runtime.NumCPU() <= 2 {
		if intra == 0 {
			intra = 1
		}
		if inter == 0 {
			inter = 1
		}
	}
	spin := "0"
	if cfg.Spinning {
		spin = "1"
	}
	err = errors.Join(
		setIf(intra > 0, func() error { return opts.SetIntraOpNumThreads(intra) }),
		setIf(inter > 0, func() error { return opts.SetInterOpNumThreads(inter) }),
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", spin),
		opts.AddSessionConfigEntry("session.inter_op.allow_spinning", spin),
		opts.SetGraphOptimizationLevel(ortgo.GraphOptimizationLevelEnableAll),
	)
	if err != nil {
		opts.Destroy()
		return nil, fmt.Errorf("session options: %w", err)
	}
	return opts, nil
}

func setIf(cond bool, f func() error) error {
	if !cond {
		return nil
	}
	return f()
}

func specs(kind string, infos []ortgo.InputOutputInfo) ([]scoring.TensorSpec, error) {
	out := make([]scoring.TensorSpec, len(infos))
	for i, info := range infos {
		if info.OrtValueType != ortgo.ONNXTypeTensor {
			return nil, fmt.Errorf("%s %q is a %s: %w (only tensors)", kind, info.Name, info.OrtValueType, scoring.ErrUnsupported)
		}
		dt, ok := fromORT(info.DataType)
		if !ok {
			return nil, fmt.Errorf("%s %q has element type %s: %w", kind, info.Name, info.DataType, scoring.ErrUnsupported)
		}
		shape := make([]int64, len(info.Dimensions))
		for d, n := range info.Dimensions {
			if n < 0 {
				n = scoring.Dynamic
			}
			shape[d] = n
		}
		out[i] = scoring.TensorSpec{Name: info.Name, DataType: dt, Shape: shape}
	}
	return out, nil
}

func fromORT(t ortgo.TensorElementDataType) (scoring.DataType, bool) {
	switch t {
	case ortgo.TensorElementDataTypeFloat:
		return scoring.Float32, true
	case ortgo.TensorElementDataTypeDouble:
		return scoring.Float64, true
	case ortgo.TensorElementDataTypeInt8:
		return scoring.Int8, true
	case ortgo.TensorElementDataTypeInt16:
		return scoring.Int16, true
	case ortgo.TensorElementDataTypeInt32:
		return scoring.Int32, true
	case ortgo.TensorElementDataTypeInt64:
		return scoring.Int64, true
	case ortgo.TensorElementDataTypeUint8:
		return scoring.Uint8, true
	case ortgo.TensorElementDataTypeUint16:
		return scoring.Uint16, true
	case ortgo.TensorElementDataTypeUint32:
		return scoring.Uint32, true
	case ortgo.TensorElementDataTypeUint64:
		return scoring.Uint64, true
	case ortgo.TensorElementDataTypeBool:
		return scoring.Bool, true
	}
	return scoring.Invalid, false
}

// Signature returns the model's inputs and outputs as ONNX Runtime reports
// them; symbolic dimensions are scoring.Dynamic.
func (r *Runner) Signature() scoring.Signature { return r.sig }

// Path returns the model file the runner was opened from.
func (r *Runner) Path() string { return r.path }

// Run runs one inference. If ctx can end, ONNX Runtime is told to stop the
// run when it does (at its next check between operators) and Run returns
// ctx's error. Other errors wrap scoring.ErrBackend.
func (r *Runner) Run(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make([]ortgo.Value, len(inputs))
	defer func() {
		for _, v := range in {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		v, err := toValue(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w: %w", t.Name, scoring.ErrBackend, err)
		}
		in[i] = v
	}
	out := make([]ortgo.Value, len(r.sig.Outputs))
	for i, scalar := range r.scalarOut {
		if scalar {
			v, err := newScalar(r.sig.Outputs[i].DataType)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w: %w", r.sig.Outputs[i].Name, scoring.ErrBackend, err)
			}
			out[i] = v
		}
	}
	defer func() {
		for _, v := range out {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	var runOpts *ortgo.RunOptions
	if ctx.Done() != nil {
		// A cancelable request: ONNX Runtime stops the run when ctx ends.
		ro, err := ortgo.NewRunOptions()
		if err != nil {
			return nil, fmt.Errorf("%w: run options: %w", scoring.ErrBackend, err)
		}
		defer ro.Destroy()
		stop := context.AfterFunc(ctx, func() { ro.Terminate() })
		defer stop()
		runOpts = ro
	}
	if err := r.sess.RunWithOptions(in, out, runOpts); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("run stopped: %w", cerr)
		}
		return nil, fmt.Errorf("%w: %w", scoring.ErrBackend, err)
	}
	res := make([]scoring.Tensor, len(out))
	for i, v := range out {
		t, err := fromValue(v)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w: %w", r.sig.Outputs[i].Name, scoring.ErrBackend, err)
		}
		t.Name = r.sig.Outputs[i].Name
		res[i] = t
	}
	return res, nil
}

// Close releases the session.
func (r *Runner) Close() error {
	if err := r.sess.Destroy(); err != nil {
		return fmt.Errorf("close model %q: %w", r.path, err)
	}
	return nil
}

func toValue(t scoring.Tensor) (ortgo.Value, error) {
	if len(t.Shape) == 0 {
		switch d := t.Data.(type) {
		case []float32:
			return ortgo.NewScalar(d[0])
		case []float64:
			return ortgo.NewScalar(d[0])
		case []int8:
			return ortgo.NewScalar(d[0])
		case []int16:
			return ortgo.NewScalar(d[0])
		case []int32:
			return ortgo.NewScalar(d[0])
		case []int64:
			return ortgo.NewScalar(d[0])
		case []uint8:
			return ortgo.NewScalar(d[0])
		case []uint16:
			return ortgo.NewScalar(d[0])
		case []uint32:
			return ortgo.NewScalar(d[0])
		case []uint64:
			return ortgo.NewScalar(d[0])
		case []bool:
			return ortgo.NewScalar(d[0])
		}
		return nil, fmt.Errorf("unsupported data %T", t.Data)
	}
	s := ortgo.Shape(t.Shape)
	switch d := t.Data.(type) {
	case []float32:
		return newTensor(s, d)
	case []float64:
		return newTensor(s, d)
	case []int8:
		return newTensor(s, d)
	case []int16:
		return newTensor(s, d)
	case []int32:
		return newTensor(s, d)
	case []int64:
		return newTensor(s, d)
	case []uint8:
		return newTensor(s, d)
	case []uint16:
		return newTensor(s, d)
	case []uint32:
		return newTensor(s, d)
	case []uint64:
		return newTensor(s, d)
	case []bool:
		return newTensor(s, d)
	}
	return nil, fmt.Errorf("unsupported data %T", t.Data)
}

// newTensor wraps data without copying. Zero-element tensors get a
// one-element backing slice: ONNX Runtime accepts it and the shape decides.
func newTensor[T ortgo.TensorData](s ortgo.Shape, data []T) (ortgo.Value, error) {
	if len(data) == 0 {
		data = make([]T, 1)
	}
	return ortgo.NewTensor(s, data)
}

func newScalar(t scoring.DataType) (ortgo.Value, error) {
	switch t {
	case scoring.Float32:
		return ortgo.NewEmptyScalar[float32]()
	case scoring.Float64:
		return ortgo.NewEmptyScalar[float64]()
	case scoring.Int8:
		return ortgo.NewEmptyScalar[int8]()
	case scoring.Int16:
		return ortgo.NewEmptyScalar[int16]()
	case scoring.Int32:
		return ortgo.NewEmptyScalar[int32]()
	case scoring.Int64:
		return ortgo.NewEmptyScalar[int64]()
	case scoring.Uint8:
		return ortgo.NewEmptyScalar[uint8]()
	case scoring.Uint16:
		return ortgo.NewEmptyScalar[uint16]()
	case scoring.Uint32:
		return ortgo.NewEmptyScalar[uint32]()
	case scoring.Uint64:
		return ortgo.NewEmptyScalar[uint64]()
	case scoring.Bool:
		return ortgo.NewEmptyScalar[bool]()
	}
	return nil, fmt.Errorf("unsupported scalar type %s", t)
}

func fromValue(v ortgo.Value) (scoring.Tensor, error) {
	switch t := v.(type) {
	case *ortgo.Tensor[float32]:
		return scoring.Tensor{DataType: scoring.Float32, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[float64]:
		return scoring.Tensor{DataType: scoring.Float64, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[int8]:
		return scoring.Tensor{DataType: scoring.Int8, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[int16]:
		return scoring.Tensor{DataType: scoring.Int16, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[int32]:
		return scoring.Tensor{DataType: scoring.Int32, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[int64]:
		return scoring.Tensor{DataType: scoring.Int64, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[uint8]:
		return scoring.Tensor{DataType: scoring.Uint8, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[uint16]:
		return scoring.Tensor{DataType: scoring.Uint16, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[uint32]:
		return scoring.Tensor{DataType: scoring.Uint32, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[uint64]:
		return scoring.Tensor{DataType: scoring.Uint64, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Tensor[bool]:
		return scoring.Tensor{DataType: scoring.Bool, Shape: t.GetShape(), Data: t.GetData()}, nil
	case *ortgo.Scalar[float32]:
		return scoring.Tensor{DataType: scoring.Float32, Shape: []int64{}, Data: []float32{t.GetData()}}, nil
	case *ortgo.Scalar[float64]:
		return scoring.Tensor{DataType: scoring.Float64, Shape: []int64{}, Data: []float64{t.GetData()}}, nil
	case *ortgo.Scalar[int8]:
		return scoring.Tensor{DataType: scoring.Int8, Shape: []int64{}, Data: []int8{t.GetData()}}, nil
	case *ortgo.Scalar[int16]:
		return scoring.Tensor{DataType: scoring.Int16, Shape: []int64{}, Data: []int16{t.GetData()}}, nil
	case *ortgo.Scalar[int32]:
		return scoring.Tensor{DataType: scoring.Int32, Shape: []int64{}, Data: []int32{t.GetData()}}, nil
	case *ortgo.Scalar[int64]:
		return scoring.Tensor{DataType: scoring.Int64, Shape: []int64{}, Data: []int64{t.GetData()}}, nil
	case *ortgo.Scalar[uint8]:
		return scoring.Tensor{DataType: scoring.Uint8, Shape: []int64{}, Data: []uint8{t.GetData()}}, nil
	case *ortgo.Scalar[uint16]:
		return scoring.Tensor{DataType: scoring.Uint16, Shape: []int64{}, Data: []uint16{t.GetData()}}, nil
	case *ortgo.Scalar[uint32]:
		return scoring.Tensor{DataType: scoring.Uint32, Shape: []int64{}, Data: []uint32{t.GetData()}}, nil
	case *ortgo.Scalar[uint64]:
		return scoring.Tensor{DataType: scoring.Uint64, Shape: []int64{}, Data: []uint64{t.GetData()}}, nil
	case *ortgo.Scalar[bool]:
		return scoring.Tensor{DataType: scoring.Bool, Shape: []int64{}, Data: []bool{t.GetData()}}, nil
	case nil:
		return scoring.Tensor{}, errors.New("no value")
	}
	return scoring.Tensor{}, fmt.Errorf("unsupported value %T of type %s: %w", v, v.GetONNXType(), scoring.ErrUnsupported)
}
