package fpgabench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// Result is the report.
type Result struct {
	Model                    string  `json:"model"`
	DeviceUsPerInference     float64 `json:"device_us_per_inference"`
	DeviceCyclesPerInference uint64  `json:"device_cycles_per_inference"`
	ShimOverheadUs           float64 `json:"shim_overhead_us"`
	FPGARunP50Us             float64 `json:"fpga_run_p50_us"`
	CPUORTUsPerInference     float64 `json:"cpu_ort_us_per_inference"`
	EmulatorInferencesPerSec float64 `json:"emulator_inferences_per_sec"`
	MaxAbsErrorVsCPU         float64 `json:"max_abs_error_vs_cpu"`
}

const (
	in, out = 64, 10
	seed    = 1
)

var hidden = []int{128}

// Run parses args (--json, --duration) and writes the report to w.
func Run(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("fpga", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print a JSON object instead of a table")
	dur := fs.Duration("duration", 2*time.Second, "duration of each measurement")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("fpga bench: %w", err)
	}
	if *dur <= 0 {
		return fmt.Errorf("fpga bench: --duration %s: want > 0", *dur)
	}
	res, err := measure(ctx, *dur)
	if err != nil {
		return fmt.Errorf("fpga bench: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(w, "model %s on the emulated 32x32 card at 250 MHz\n", res.Model)
	fmt.Fprintf(w, "%-30s %12.2f  (%d cycles)\n", "device_us_per_inference", res.DeviceUsPerInference, res.DeviceCyclesPerInference)
	fmt.Fprintf(w, "%-30s %12.2f\n", "shim_overhead_us", res.ShimOverheadUs)
	fmt.Fprintf(w, "%-30s %12.2f\n", "fpga_run_p50_us", res.FPGARunP50Us)
	fmt.Fprintf(w, "%-30s %12.2f\n", "cpu_ort_us_per_inference", res.CPUORTUsPerInference)
	fmt.Fprintf(w, "%-30s %12.0f\n", "emulator_inferences_per_sec", res.EmulatorInferencesPerSec)
	fmt.Fprintf(w, "%-30s %12.4g\n", "max_abs_error_vs_cpu", res.MaxAbsErrorVsCPU)
	return nil
}

func measure(ctx context.Context, dur time.Duration) (*Result, error) {
	log := slog.New(slog.DiscardHandler)
	dir, err := os.MkdirTemp("", "fpgabench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "card.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- emu.Serve(sctx, l, emu.Config{}, log) }()
	defer func() { stop(); <-done }()
	dev, err := fpga.Open(ctx, "unix:"+sock, fpga.Config{}, log)
	if err != nil {
		return nil, err
	}
	defer dev.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	sample := func() []float32 {
		x := make([]float32, in)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		return x
	}
	var calib [][]float32
	for i := 0; i < 64; i++ {
		calib = append(calib, sample())
	}
	model := onnxtest.MLP(in, hidden, out, seed)
	res := &Result{Model: fmt.Sprintf("MLP %d-%v-%d", in, hidden, out)}

	// Latency: one sample per request, one sample per kernel iteration.
	r1, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{Batch: 1}, WorkDir: dir}, log)
	if err != nil {
		return nil, err
	}
	x1 := sample()
	one := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, in}, Data: x1}}
	lat, _, _, err := loop(ctx, dur, func() error { _, err := r1.Run(ctx, one); return err })
	if err != nil {
		r1.Close()
		return nil, err
	}
	st := r1.Stats()
	res.FPGARunP50Us = pct(lat, 50)
	res.DeviceCyclesPerInference = st.Cycles / st.Kernels
	res.DeviceUsPerInference = float64(st.DeviceTime.Nanoseconds()) / 1e3 / float64(st.Kernels)
	got, err := r1.Run(ctx, one)
	r1.Close()
	if err != nil {
		return nil, err
	}
	want := onnxtest.MLPOutput(in, hidden, out, seed, x1)
	for i, v := range got[0].Data.([]float32) {
		res.MaxAbsErrorVsCPU = max(res.MaxAbsErrorVsCPU, float64(abs(v-want[i])))
	}

	// Throughput: 32 samples per request and per iteration.
	r32, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{Batch: 32}, WorkDir: dir}, log)
	if err != nil {
		return nil, err
	}
	var x32 []float32
	for i := 0; i < 32; i++ {
		x32 = append(x32, sample()...)
	}
	batch := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{32, in}, Data: x32}}
	_, n, el, err := loop(ctx, dur, func() error { _, err := r32.Run(ctx, batch); return err })
	r32.Close()
	if err != nil {
		return nil, err
	}
	res.EmulatorInferencesPerSec = float64(32*n) / el.Seconds()

	// Shim overhead: what the backend does per inference (one submitted
	// job: input copy, start, wait, output copy) with a one-instruction
	// program, so the device time is nil.
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: 1, ACCWords: 1, Instrs: []isa.Instr{{Op: isa.OpNop}}}
	img, err := p.Encode()
	if err != nil {
		return nil, err
	}
	prog, err := dev.LoadProgram(ctx, img)
	if err != nil {
		return nil, err
	}
	buf, err := dev.Alloc(ctx, 4096)
	if err != nil {
		return nil, err
	}
	inb, outb := make([]byte, in), make([]byte, 4*out)
	job := &fpga.Job{Program: prog, Iterations: 1, Args: []uint64{buf.Addr, buf.Addr},
		Writes: []fpga.Copy{{Buf: buf, Data: inb}}, Reads: []fpga.Copy{{Buf: buf, Off: 1024, Data: outb}}}
	lat, _, _, err = loop(ctx, dur, func() error { _, err := dev.Submit(ctx, job); return err })
	if err != nil {
		return nil, err
	}
	res.ShimOverheadUs = pct(lat, 50)

	// ONNX Runtime on the CPU.
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		return nil, err
	}
	cpu, err := ort.Open(path, ort.Config{}, log)
	if err != nil {
		return nil, err
	}
	defer cpu.Close()
	lat, _, _, err = loop(ctx, dur, func() error { _, err := cpu.Run(ctx, one); return err })
	if err != nil {
		return nil, err
	}
	res.CPUORTUsPerInference = pct(lat, 50)
	return res, nil
}

func abs(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// loop calls f until dur has passed and returns per-call latencies in µs.
func loop(ctx context.Context, dur time.Duration, f func() error) ([]float64, int, time.Duration, error) {
	var lat []float64
	start := time.Now()
	for time.Since(start) < dur && ctx.Err() == nil {
		t := time.Now()
		if err := f(); err != nil {
			return nil, 0, 0, err
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
	}
	return lat, len(lat), time.Since(start), ctx.Err()
}

func pct(lat []float64, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}
