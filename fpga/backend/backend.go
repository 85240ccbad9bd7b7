package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// Config configures a Runner. Calibration is required when any part of
// the model can run on the device.
type Config struct {
	// Calibration holds sample inputs (see compiler.ReadCalibration).
	Calibration [][]float32
	// Compiler options (batch, RequireFull, CacheDir).
	Compiler compiler.Options
	// FallbackCPU runs the whole model on ONNX Runtime when the device
	// fails and a reset does not cure it.
	FallbackCPU bool
	// ORT configures the ONNX Runtime sessions (suffix and fallback).
	ORT ort.Config
	// WorkDir holds the suffix model file; empty means a new temp dir,
	// removed by Close.
	WorkDir string
	// MaxIterations bounds the samples per kernel start to
	// MaxIterations·batch; 0 means 64.
	MaxIterations int
}

// Stats are counters since Open.
type Stats struct {
	Runs       uint64        // Run calls that used the device
	Kernels    uint64        // kernel starts
	Cycles     uint64        // device cycles
	DeviceTime time.Duration // modelled device time
	Retries    uint64        // runs retried after a reset
	Fallbacks  uint64        // runs served by the CPU fallback
}

var _ scoring.Runner = (*Runner)(nil)

// Runner runs one compiled model. Run is safe for concurrent use; device
// work is serialized (the card runs one kernel at a time).
type Runner struct {
	dev   *fpga.Device
	art   *compiler.Artifact
	model []byte
	sig   scoring.Signature
	cfg   Config
	log   *slog.Logger
	dir   string
	owned bool // dir is ours to remove

	suffix *ort.Runner

	mu       sync.Mutex
	prog     fpga.Program
	in, out  fpga.Buffer
	loaded   bool
	fallback *ort.Runner
	stats    Stats
	// Reused by deviceOnce (under mu): quantized input, raw output and
	// the job that carries them.
	inBuf, rawBuf []byte
	job           fpga.Job
}

// Open compiles model for dev's card, loads the program and opens the CPU
// suffix. The returned Runner must be closed.
func Open(ctx context.Context, dev *fpga.Device, model []byte, cfg Config, log *slog.Logger) (*Runner, error) {
	info, err := dev.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("fpga backend: %w", err)
	}
	art, err := compiler.Compile(model, cfg.Calibration, info, cfg.Compiler, log)
	if err != nil {
		return nil, fmt.Errorf("fpga backend: %w", err)
	}
	m, err := onnx.Decode(model)
	if err != nil {
		return nil, fmt.Errorf("fpga backend: %w", err)
	}
	sig, err := signatureOf(m)
	if err != nil {
		return nil, fmt.Errorf("fpga backend: %w", err)
	}
	if cfg.MaxIterations <= 0 {
		cfg.MaxIterations = 64
	}
	r := &Runner{dev: dev, art: art, model: model, sig: sig, cfg: cfg, log: log, dir: cfg.WorkDir}
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "atelier-fpga-*"); err != nil {
			return nil, fmt.Errorf("fpga backend: %w", err)
		}
		r.owned = true
	}
	if art.Suffix != nil {
		path := filepath.Join(r.dir, art.ModelDigest[:16]+"-suffix.onnx")
		if err := os.WriteFile(path, art.Suffix, 0o644); err != nil {
			r.Close()
			return nil, fmt.Errorf("fpga backend: write suffix model: %w", err)
		}
		if r.suffix, err = ort.Open(path, cfg.ORT, log); err != nil {
			r.Close()
			return nil, fmt.Errorf("fpga backend: suffix model: %w", err)
		}
	}
	if art.Image != nil {
		r.mu.Lock()
		err := r.load(ctx)
		r.mu.Unlock()
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("fpga backend: %w", err)
		}
	}
	return r, nil
}

// Artifact returns what the compiler produced (for logs and reports).
func (r *Runner) Artifact() *compiler.Artifact { return r.art }

// Stats returns the counters.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Signature is the model's.
func (r *Runner) Signature() scoring.Signature { return r.sig }

// load puts the program on the card and allocates the buffers; mu held.
func (r *Runner) load(ctx context.Context) error {
	p := r.art.Plan
	var err error
	if r.prog, err = r.dev.LoadProgram(ctx, r.art.Image); err != nil {
		return fmt.Errorf("load program: %w", err)
	}
	n := uint64(r.cfg.MaxIterations * p.Batch)
	if r.in, err = r.dev.Alloc(ctx, n*uint64(p.InBytes)); err != nil {
		return fmt.Errorf("input buffer: %w", err)
	}
	if r.out, err = r.dev.Alloc(ctx, n*uint64(p.OutBytes)); err != nil {
		return fmt.Errorf("output buffer: %w", err)
	}
	r.loaded = true
	return nil
}

// Run scores one request.
func (r *Runner) Run(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	byName := map[string]scoring.Tensor{}
	for _, t := range inputs {
		byName[t.Name] = t
	}
	if r.art.Image == nil {
		return r.finish(ctx, byName, nil)
	}
	p := r.art.Plan
	x, ok := byName[p.Input]
	if !ok {
		return nil, fmt.Errorf("fpga backend: input %q missing: %w", p.Input, scoring.ErrInvalidInput)
	}
	data, ok := x.Data.([]float32)
	if !ok || len(x.Shape) != 1+len(p.InputDims) {
		return nil, fmt.Errorf("fpga backend: input %q: want FP32 of rank %d: %w", p.Input, 1+len(p.InputDims), scoring.ErrInvalidInput)
	}
	n := int(x.Shape[0])
	if len(data) != n*p.InBytes {
		return nil, fmt.Errorf("fpga backend: input %q: %d values for %d samples of %d: %w", p.Input, len(data), n, p.InBytes, scoring.ErrInvalidInput)
	}
	cut, err := r.device(ctx, data, n)
	if err != nil {
		if !r.cfg.FallbackCPU || ctx.Err() != nil {
			return nil, fmt.Errorf("fpga backend: %w: %w", scoring.ErrBackend, err)
		}
		r.log.Warn("fpga device failed; serving from the CPU", "err", err)
		return r.runFallback(ctx, inputs)
	}
	shape := append([]int64{int64(n)}, p.OutputDims...)
	return r.finish(ctx, byName, &scoring.Tensor{Name: p.Output, DataType: scoring.Float32, Shape: shape, Data: cut})
}

// device runs the prefix, retrying once after a reset.
func (r *Runner) device(ctx context.Context, x []float32, n int) ([]float32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Runs++
	out, err := r.deviceOnce(ctx, x, n)
	if err == nil || !fpga.Recoverable(err) || ctx.Err() != nil {
		return out, err
	}
	r.log.Warn("fpga device fault; resetting and retrying once", "err", err)
	r.stats.Retries++
	r.loaded = false
	if rerr := r.dev.Reset(ctx); rerr != nil {
		return nil, fmt.Errorf("%w; reset failed: %w", err, rerr)
	}
	if lerr := r.load(ctx); lerr != nil {
		return nil, fmt.Errorf("%w; reload after reset failed: %w", err, lerr)
	}
	out, err2 := r.deviceOnce(ctx, x, n)
	if err2 != nil {
		return nil, fmt.Errorf("device failed again after a reset: %w (first failure: %v)", err2, err)
	}
	return out, nil
}

func (r *Runner) deviceOnce(ctx context.Context, x []float32, n int) ([]float32, error) {
	if !r.loaded {
		if err := r.load(ctx); err != nil {
			return nil, err
		}
	}
	p := r.art.Plan
	per := r.cfg.MaxIterations * p.Batch
	perOut := 1
	for _, d := range p.OutputDims {
		perOut *= int(d)
	}
	var out []float32
	if n > per || n == 0 {
		out = make([]float32, 0, n*perOut)
	}
	for s0 := 0; s0 < n; s0 += per {
		cnt := min(per, n-s0)
		iters := (cnt + p.Batch - 1) / p.Batch
		in := grow(&r.inBuf, iters*p.Batch*p.InBytes)
		clear(in[cnt*p.InBytes:]) // zero padding for the last iteration
		p.QuantizeInput(x[s0*p.InBytes:(s0+cnt)*p.InBytes], in)
		raw := grow(&r.rawBuf, cnt*p.OutBytes)
		// One submission: input copy, kernel, wait and output copy in a
		// single round trip to the card.
		j := &r.job
		j.Program, j.Iterations = r.prog, iters
		j.Args = append(j.Args[:0], r.in.Addr, r.out.Addr)
		j.Writes = append(j.Writes[:0], fpga.Copy{Buf: r.in, Data: in})
		j.Reads = append(j.Reads[:0], fpga.Copy{Buf: r.out, Data: raw})
		st, err := r.dev.Submit(ctx, j)
		j.Writes[0].Data, j.Reads[0].Data = nil, nil
		if err != nil {
			return nil, err
		}
		r.stats.Kernels++
		r.stats.Cycles += st.Cycles
		r.stats.DeviceTime += st.DeviceTime
		deq := p.DequantizeOutput(raw, cnt)
		if n <= per {
			return deq, nil
		}
		out = append(out, deq...)
	}
	return out, nil
}

// grow returns (*b)[:n], reallocating *b when it is too small.
func grow(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	return (*b)[:n]
}

// finish runs the CPU suffix (if any) and assembles the outputs.
func (r *Runner) finish(ctx context.Context, byName map[string]scoring.Tensor, cut *scoring.Tensor) ([]scoring.Tensor, error) {
	have := map[string]scoring.Tensor{}
	if cut != nil {
		have[cut.Name] = *cut
		byName[cut.Name] = *cut
	}
	if r.suffix != nil {
		ssig := r.suffix.Signature()
		in := make([]scoring.Tensor, len(ssig.Inputs))
		for i, s := range ssig.Inputs {
			t, ok := byName[s.Name]
			if !ok {
				return nil, fmt.Errorf("fpga backend: cpu part needs %q: %w", s.Name, scoring.ErrInvalidInput)
			}
			in[i] = t
		}
		outs, err := r.suffix.Run(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("fpga backend: cpu part: %w", err)
		}
		for i, o := range outs {
			have[ssig.Outputs[i].Name] = o
		}
	}
	res := make([]scoring.Tensor, len(r.sig.Outputs))
	for i, o := range r.sig.Outputs {
		t, ok := have[o.Name]
		if !ok {
			return nil, fmt.Errorf("fpga backend: output %q was not produced: %w", o.Name, scoring.ErrBackend)
		}
		t.Name = o.Name
		res[i] = t
	}
	return res, nil
}

func (r *Runner) runFallback(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, error) {
	r.mu.Lock()
	if r.fallback == nil {
		path := filepath.Join(r.dir, r.art.ModelDigest[:16]+"-full.onnx")
		err := os.WriteFile(path, r.model, 0o644)
		if err == nil {
			r.fallback, err = ort.Open(path, r.cfg.ORT, r.log)
		}
		if err != nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("fpga backend: cpu fallback: %w: %w", scoring.ErrBackend, err)
		}
	}
	fb := r.fallback
	r.stats.Fallbacks++
	r.mu.Unlock()
	fsig := fb.Signature()
	byName := map[string]scoring.Tensor{}
	for _, t := range inputs {
		byName[t.Name] = t
	}
	in := make([]scoring.Tensor, len(fsig.Inputs))
	for i, s := range fsig.Inputs {
		in[i] = byName[s.Name]
	}
	return fb.Run(ctx, in)
}

// Close unloads the program and frees the buffers (best effort: the card
// may be gone) and closes the ONNX Runtime sessions. It does not close
// the device.
func (r *Runner) Close() error {
	var errs []error
	r.mu.Lock()
	if r.loaded {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, b := range []fpga.Buffer{r.in, r.out} {
			if err := r.dev.Free(ctx, b); err != nil && !errors.Is(err, fpga.ErrDeviceLost) {
				errs = append(errs, err)
			}
		}
		if err := r.dev.UnloadProgram(ctx, r.prog); err != nil && !errors.Is(err, fpga.ErrDeviceLost) {
			errs = append(errs, err)
		}
		cancel()
		r.loaded = false
	}
	r.mu.Unlock()
	for _, s := range []*ort.Runner{r.suffix, r.fallback} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	if r.owned {
		errs = append(errs, os.RemoveAll(r.dir))
	}
	return errors.Join(errs...)
}

// signatureOf maps the ONNX signature to scoring types.
func signatureOf(m *onnx.Model) (scoring.Signature, error) {
	s := m.Signature()
	conv := func(vs []onnx.ValueInfo) ([]scoring.TensorSpec, error) {
		out := make([]scoring.TensorSpec, len(vs))
		for i, v := range vs {
			dt, ok := map[onnx.DataType]scoring.DataType{
				onnx.Float: scoring.Float32, onnx.Double: scoring.Float64, onnx.Int8: scoring.Int8, onnx.Int16: scoring.Int16,
				onnx.Int32: scoring.Int32, onnx.Int64: scoring.Int64, onnx.Uint8: scoring.Uint8, onnx.Uint16: scoring.Uint16,
				onnx.Uint32: scoring.Uint32, onnx.Uint64: scoring.Uint64, onnx.Bool: scoring.Bool,
			}[v.ElemType]
			if !ok || !v.HasShape {
				return nil, fmt.Errorf("value %q: type %s without a supported tensor type and shape: %w", v.Name, v.ElemType, scoring.ErrUnsupported)
			}
			shape := make([]int64, len(v.Shape))
			for d, dim := range v.Shape {
				shape[d] = dim.Value
				if dim.Dynamic() {
					shape[d] = scoring.Dynamic
				}
			}
			out[i] = scoring.TensorSpec{Name: v.Name, DataType: dt, Shape: shape}
		}
		return out, nil
	}
	var sig scoring.Signature
	var err error
	if sig.Inputs, err = conv(s.Inputs); err != nil {
		return sig, err
	}
	sig.Outputs, err = conv(s.Outputs)
	return sig, err
}
