package fpgahost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/internal/onnx"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// Backend names reported in agent.DeviceStats.Backend.
const (
	BackendFPGA        = "fpga"
	BackendCPU         = "cpu"          // nothing of the model maps to the card
	BackendCPUFallback = "cpu-fallback" // the card is down; the CPU serves
)

// DefaultMaxCalibrationSamples bounds the samples read from a calibration
// file when Config.MaxCalibrationSamples is 0.
const DefaultMaxCalibrationSamples = 1000

// Config configures a Host. It is read-only after Open.
type Config struct {
	// Target is the card's address, e.g. "unix:/run/atelier/fpga.sock".
	Target string
	// Device holds the shim's dial and wait timeouts.
	Device fpga.Config
	// CacheDir keeps compiled programs (see compiler.Options.CacheDir);
	// empty compiles at every load.
	CacheDir string
	// FallbackCPU lets every deployment fall back to the CPU when the card
	// stays down; a deployment whose RuntimeOptions.allow_cpu_fallback is
	// set falls back either way.
	FallbackCPU bool
	// Calibration maps a registered model name to a calibration file; the
	// key "" applies to every model not named.
	Calibration map[string]string
	// MaxCalibrationSamples bounds the samples read per file; 0 means
	// DefaultMaxCalibrationSamples.
	MaxCalibrationSamples int
	// Batch is the compiler's samples per kernel iteration (0: its default).
	Batch int
	// ORT configures the ONNX Runtime sessions: the CPU part of a split
	// model and the fallback.
	ORT ort.Config
}

// Host is an FPGA agent's card and the runners open on it. It is safe for
// concurrent use.
type Host struct {
	cfg  Config
	log  *slog.Logger
	dev  *fpga.Device
	info fpga.Info

	mu    sync.Mutex
	stats map[string]*deployStats // by deployment name
}

// deployStats are one deployment's totals across the runners it had.
type deployStats struct {
	backend       string
	failures      uint64 // failed attempts the backend did not retry (lost card, ...)
	fallbacks     uint64
	closedRetries uint64 // backend retries of runners already closed
	live          map[*Runner]bool
}

var _ agent.DeviceReporter = (*Host)(nil)

// Open connects to the card at cfg.Target and reads its info. The error
// wraps ErrDevice when the card is unreachable or does not answer.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Host, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Target == "" {
		return nil, fmt.Errorf("%w: Target is empty; want unix:PATH", ErrInvalidConfig)
	}
	if cfg.MaxCalibrationSamples < 0 || cfg.Batch < 0 {
		return nil, fmt.Errorf("%w: MaxCalibrationSamples %d and Batch %d must be >= 0", ErrInvalidConfig, cfg.MaxCalibrationSamples, cfg.Batch)
	}
	if cfg.MaxCalibrationSamples == 0 {
		cfg.MaxCalibrationSamples = DefaultMaxCalibrationSamples
	}
	dev, err := fpga.Open(ctx, cfg.Target, cfg.Device, log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDevice, err)
	}
	info, err := dev.Info(ctx)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrDevice, cfg.Target, err)
	}
	return &Host{cfg: cfg, log: log, dev: dev, info: info, stats: map[string]*deployStats{}}, nil
}

// Info is the card's, as read at Open.
func (h *Host) Info() fpga.Info { return h.info }

// Capabilities is the card as the agent reports it (Capabilities.fpga).
func (h *Host) Capabilities() *agentv1.FPGADevice {
	return DeviceOf(h.info)
}

// DeviceOf converts a card's info to its protocol form.
func DeviceOf(i fpga.Info) *agentv1.FPGADevice {
	return &agentv1.FPGADevice{Name: i.Name, ArrayRows: uint32(i.Rows), ArrayCols: uint32(i.Cols),
		ClockMhz: uint32(i.ClockHz / 1_000_000), MemoryBytes: i.DRAMBytes, Firmware: i.Firmware}
}

// Close closes the connection to the card. Close every Runner first.
func (h *Host) Close() error { return h.dev.Close() }

// calibration reads the samples for a model with n values per sample.
func (h *Host) calibration(modelName string, n int) ([][]float32, string, error) {
	path, ok := h.cfg.Calibration[modelName]
	if !ok {
		path, ok = h.cfg.Calibration[""]
	}
	if !ok || path == "" {
		return nil, "", fmt.Errorf("model %q: %w: give a calibration file for it (atelier-agent run --fpga-calibration %s=FILE, or a default --fpga-calibration FILE)",
			modelName, ErrNoCalibration, modelName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("model %q: calibration: %w", modelName, err)
	}
	c, err := compiler.ReadCalibration(bytes.NewReader(b), n, h.cfg.MaxCalibrationSamples)
	if err != nil {
		return nil, path, fmt.Errorf("model %q: calibration %s: %w", modelName, path, err)
	}
	return c, path, nil
}

// sampleSize is the number of values per sample of model's first input.
func sampleSize(model []byte) (int, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return 0, err
	}
	sig := m.Signature()
	if len(sig.Inputs) == 0 {
		return 0, errors.New("the model has no inputs")
	}
	per := 1
	for _, d := range sig.Inputs[0].Shape[min(1, len(sig.Inputs[0].Shape)):] {
		if d.Dynamic() || d.Value <= 0 {
			return 0, fmt.Errorf("input %q: only the first (batch) dimension may be dynamic", sig.Inputs[0].Name)
		}
		per *= int(d.Value)
	}
	return per, nil
}

// Open opens the runner of spec's model file at path on the card: it
// compiles the model (or takes it from the cache), programs the card and
// opens the CPU part; with the fallback allowed it also opens the whole
// model on ONNX Runtime. It has the signature of edge.Config.Open. The
// caller closes the runner (the scoring registry does).
func (h *Host) Open(ctx context.Context, spec *agentv1.DeploymentSpec, path string) (scoring.Runner, error) {
	name, modelName := spec.GetName(), spec.GetModel().GetName()
	if modelName == "" {
		modelName = name
	}
	model, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fpga host: deployment %q: %w", name, err)
	}
	n, err := sampleSize(model)
	if err != nil {
		return nil, fmt.Errorf("fpga host: deployment %q: model %s: %w", name, path, err)
	}
	calib, calibPath, err := h.calibration(modelName, n)
	if err != nil {
		return nil, fmt.Errorf("fpga host: deployment %q: %w", name, err)
	}
	bcfg := backend.Config{
		Calibration: calib,
		Compiler:    compiler.Options{Batch: h.cfg.Batch, CacheDir: h.cfg.CacheDir},
		ORT:         h.cfg.ORT,
	}
	be, err := backend.Open(ctx, h.dev, model, bcfg, h.log)
	if err != nil {
		return nil, fmt.Errorf("fpga host: deployment %q: %w", name, err)
	}
	r := &Runner{h: h, name: name, model: model, bcfg: bcfg, sig: be.Signature(), be: be,
		fallback: h.cfg.FallbackCPU || spec.GetOptions().GetAllowCpuFallback()}
	if r.fallback {
		if r.cpu, err = ort.Open(path, h.cfg.ORT, h.log); err != nil {
			be.Close()
			return nil, fmt.Errorf("fpga host: deployment %q: cpu fallback: %w", name, err)
		}
	}
	art := be.Artifact()
	backendName := BackendFPGA
	if art.Image == nil {
		backendName = BackendCPU
	}
	h.mu.Lock()
	st := h.stats[name]
	if st == nil {
		st = &deployStats{live: map[*Runner]bool{}}
		h.stats[name] = st
	}
	st.backend = backendName
	st.live[r] = true
	h.mu.Unlock()
	h.log.Info("fpga deployment opened", "deployment", name, "model", modelName, "version", spec.GetModel().GetVersion(),
		"calibration", calibPath, "calibration_samples", len(calib), "device_ops", len(art.DeviceOps),
		"cpu_ops", len(art.Unsupported), "cpu_fallback", r.fallback)
	return r, nil
}

// DeviceStats implements agent.DeviceReporter: the totals of every
// deployment opened since Open (a deployment unloaded keeps its last
// totals). Faults counts device faults: each reset-and-retry of the
// backend, and each attempt that failed on an unreachable card or with an
// error a reset does not cure. It does not wait for runs on the card.
func (h *Host) DeviceStats() map[string]agent.DeviceStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]agent.DeviceStats, len(h.stats))
	for name, st := range h.stats {
		faults := st.failures + st.closedRetries
		for r := range st.live {
			faults += r.retries()
		}
		out[name] = agent.DeviceStats{Backend: st.backend, Faults: faults, Fallbacks: st.fallbacks}
	}
	return out
}

// Runner is one deployment version on the card. Run is safe for
// concurrent use (device work is serialized by the backend).
type Runner struct {
	h        *Host
	name     string
	model    []byte
	bcfg     backend.Config
	sig      scoring.Signature
	fallback bool
	cpu      *ort.Runner // the whole model, when fallback

	mu      sync.RWMutex // guards the fields below; held shared around be.Run
	be      *backend.Runner
	gen     uint64 // incremented by every reopen
	retired uint64 // backend retries of backends replaced by reopen

	// seen is retired plus the current backend's retries after the last
	// run, so DeviceStats never waits for a run on the card.
	seen atomic.Uint64
}

var _ scoring.Runner = (*Runner)(nil)

// Signature is the model's.
func (r *Runner) Signature() scoring.Signature { return r.sig }

// errClosed is the error of a run after a failed reopen left no backend.
var errClosed = &fpga.DeviceError{Op: "run", Detail: "the program could not be reloaded on the card", Err: fpga.ErrDeviceLost}

// run is one backend run; it returns the backend generation it used.
func (r *Runner) run(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, uint64, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.be == nil {
		return nil, r.gen, errClosed
	}
	out, err := r.be.Run(ctx, inputs)
	r.seen.Store(r.retired + r.be.Stats().Retries)
	return out, r.gen, err
}

// reopen replaces backend generation gen (if still current) with a new
// backend: after a lost connection the card may be another one, whose
// buffers and programs are not the old backend's. The old backend is
// closed first, so its frees cannot touch the new one's buffers.
func (r *Runner) reopen(ctx context.Context, gen uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return nil // another request reopened already
	}
	r.gen++
	if r.be != nil {
		r.retired += r.be.Stats().Retries
		r.seen.Store(r.retired)
		if err := r.be.Close(); err != nil {
			r.h.log.Debug("fpga: closing the backend of a lost card", "deployment", r.name, "err", err)
		}
		r.be = nil
	}
	be, err := backend.Open(ctx, r.h.dev, r.model, r.bcfg, r.h.log)
	if err != nil {
		return err
	}
	r.be = be
	return nil
}

// retries is the backend's reset-and-retry count as of the last run,
// replaced backends included. It does not block.
func (r *Runner) retries() uint64 { return r.seen.Load() }

// Run scores on the card. On a fault the backend resets the card,
// reprograms it and retries once; when the connection to the card is lost
// (the card or its driver restarted) Run reconnects, programs the card
// anew and tries once more. If the card stays down Run falls back to the
// CPU when allowed, else fails with an error wrapping ErrDeviceDown and
// scoring.ErrBackend.
func (r *Runner) Run(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, error) {
	out, gen, err := r.run(ctx, inputs)
	if err != nil && ctx.Err() == nil && errors.Is(err, fpga.ErrDeviceLost) {
		r.setBackend("", true, false)
		r.h.log.Warn("fpga card unreachable; reconnecting, reprogramming and retrying once", "deployment", r.name, "err", err)
		if rerr := r.reopen(ctx, gen); rerr != nil {
			err = fmt.Errorf("%w; reprogramming the card failed: %w", err, rerr)
		} else {
			out, _, err = r.run(ctx, inputs)
		}
	}
	var de *fpga.DeviceError
	if err == nil || ctx.Err() != nil || !errors.As(err, &de) {
		if err == nil {
			r.setBackend(BackendFPGA, false, false)
		}
		return out, err
	}
	// A recoverable last error was retried by the backend, which counts it.
	counted := fpga.Recoverable(err)
	if !r.fallback {
		r.setBackend("", !counted, false)
		if !errors.Is(err, scoring.ErrBackend) {
			err = fmt.Errorf("%w: %w", scoring.ErrBackend, err)
		}
		return nil, fmt.Errorf("deployment %q: %w after a reset and a retry, and the CPU fallback is off for it: %w", r.name, ErrDeviceDown, err)
	}
	r.h.log.Warn("fpga device down; scoring on the CPU", "deployment", r.name, "err", err)
	r.setBackend(BackendCPUFallback, !counted, true)
	byName := make(map[string]scoring.Tensor, len(inputs))
	for _, t := range inputs {
		byName[t.Name] = t
	}
	sig := r.cpu.Signature()
	in := make([]scoring.Tensor, len(sig.Inputs))
	for i, s := range sig.Inputs {
		in[i] = byName[s.Name]
	}
	out, err = r.cpu.Run(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("deployment %q: cpu fallback: %w", r.name, err)
	}
	return out, nil
}

func (r *Runner) setBackend(name string, failure, fallback bool) {
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	st := r.h.stats[r.name]
	if name != "" {
		st.backend = name
	}
	if failure {
		st.failures++
	}
	if fallback {
		st.fallbacks++
	}
}

// Close releases the program and buffers on the card and the ONNX
// Runtime sessions; the deployment's totals stay in DeviceStats.
func (r *Runner) Close() error {
	r.mu.Lock()
	var err error
	if r.be != nil {
		err = r.be.Close()
	}
	r.mu.Unlock()
	if r.cpu != nil {
		err = errors.Join(err, r.cpu.Close())
	}
	r.h.mu.Lock()
	st := r.h.stats[r.name]
	if st.live[r] {
		delete(st.live, r)
		st.closedRetries += r.retries()
	}
	r.h.mu.Unlock()
	return err
}
