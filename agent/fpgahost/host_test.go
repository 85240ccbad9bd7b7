package fpgahost_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/agent/fpgahost"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

const (
	in, out = 20, 4
	tol     = 0.05 // absolute, on outputs of magnitude ~1 (int8 quantization)
)

var hidden = []int{24}

// emulator serves an emulated card on a Unix socket in a temp dir.
func emulator(t *testing.T, cfg emu.Config) (*emu.Device, string) {
	t.Helper()
	dev, err := emu.NewDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "fpga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.ServeDevice(ctx, l, dev, quiet()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
	return dev, "unix:" + sock
}

func rows(seed int64, n int) []float32 {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// files writes the model and a calibration CSV (with a label column).
func files(t *testing.T) (model, calib string) {
	t.Helper()
	dir := t.TempDir()
	model, calib = filepath.Join(dir, "model.onnx"), filepath.Join(dir, "calib.csv")
	if err := os.WriteFile(model, onnxtest.MLP(in, hidden, out, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	x := rows(1, 64)
	for s := range 64 {
		for i, v := range x[s*in : (s+1)*in] {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%g", v)
		}
		b.WriteString(",1\n")
	}
	if err := os.WriteFile(calib, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return model, calib
}

func spec(name string, fallback bool) *agentv1.DeploymentSpec {
	return &agentv1.DeploymentSpec{Name: name, Model: &agentv1.ModelRef{Name: "mlp", Version: 1},
		Options: &agentv1.RuntimeOptions{AllowCpuFallback: fallback}}
}

func openHost(t *testing.T, target, calib string) *fpgahost.Host {
	t.Helper()
	h, err := fpgahost.Open(context.Background(), fpgahost.Config{Target: target, CacheDir: t.TempDir(),
		Calibration: map[string]string{"mlp": calib}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// check runs 5 rows through r and compares with the exact float model.
// It does not stop the test: goroutines call it.
func check(t *testing.T, r scoring.Runner) error {
	t.Helper()
	x := rows(7, 5)
	res, err := r.Run(context.Background(), []scoring.Tensor{{Name: r.Signature().Inputs[0].Name, DataType: scoring.Float32, Shape: []int64{5, in}, Data: x}})
	if err != nil {
		return err
	}
	want := onnxtest.MLPOutput(in, hidden, out, 3, x)
	got := res[0].Data.([]float32)
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol {
			return fmt.Errorf("output %d = %g, want %g ± %g", i, got[i], want[i], tol)
		}
	}
	return nil
}

func stats(t *testing.T, h *fpgahost.Host, name string, want agent.DeviceStats) {
	t.Helper()
	if got := h.DeviceStats()[name]; got != want {
		t.Fatalf("DeviceStats[%q] = %+v, want %+v", name, got, want)
	}
}

func TestOpenMissingSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := fpgahost.Open(context.Background(), fpgahost.Config{Target: "unix:" + sock}, quiet())
	if !errors.Is(err, fpgahost.ErrDevice) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Open on a missing socket: %v, want ErrDevice naming %s", err, sock)
	}
	if _, err := fpgahost.Open(context.Background(), fpgahost.Config{}, quiet()); !errors.Is(err, fpgahost.ErrInvalidConfig) {
		t.Fatalf("Open without a target: %v, want ErrInvalidConfig", err)
	}
}

func TestCapabilities(t *testing.T) {
	_, target := emulator(t, emu.Config{Name: "card-7", Firmware: "fw-9", Rows: 16, Cols: 8, ClockHz: 300_000_000, DRAMBytes: 64 << 20})
	_, calib := files(t)
	h := openHost(t, target, calib)
	got := h.Capabilities()
	if got.GetName() != "card-7" || got.GetFirmware() != "fw-9" || got.GetArrayRows() != 16 || got.GetArrayCols() != 8 ||
		got.GetClockMhz() != 300 || got.GetMemoryBytes() != 64<<20 {
		t.Fatalf("Capabilities = %v", got)
	}
}

func TestServeAndRecoverFromReset(t *testing.T) {
	card, target := emulator(t, emu.Config{})
	model, calib := files(t)
	h := openHost(t, target, calib)
	r, err := h.Open(context.Background(), spec("d1", false), model)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := check(t, r); err != nil {
		t.Fatal(err)
	}
	stats(t, h, "d1", agent.DeviceStats{Backend: fpgahost.BackendFPGA})

	// The card resets under the next request: reprogrammed, retried, served.
	if err := card.Inject(emu.FaultReset, 0); err != nil {
		t.Fatal(err)
	}
	if err := check(t, r); err != nil {
		t.Fatalf("after a reset fault: %v", err)
	}
	stats(t, h, "d1", agent.DeviceStats{Backend: fpgahost.BackendFPGA, Faults: 1})
	// A bit flip in transit is caught by the CRC and retried too.
	if err := card.Inject(emu.FaultBitFlip, 0); err != nil {
		t.Fatal(err)
	}
	if err := check(t, r); err != nil {
		t.Fatalf("after a bit flip: %v", err)
	}
	stats(t, h, "d1", agent.DeviceStats{Backend: fpgahost.BackendFPGA, Faults: 2})
	// Closing keeps the totals.
	r.Close()
	stats(t, h, "d1", agent.DeviceStats{Backend: fpgahost.BackendFPGA, Faults: 2})
}

func TestCardStaysDown(t *testing.T) {
	card, target := emulator(t, emu.Config{})
	model, calib := files(t)
	h := openHost(t, target, calib)
	strict, err := h.Open(context.Background(), spec("strict", false), model)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	lenient, err := h.Open(context.Background(), spec("lenient", true), model)
	if err != nil {
		t.Fatal(err)
	}
	defer lenient.Close()
	if err := card.Inject(emu.FaultDMAStuck, 0); err != nil {
		t.Fatal(err)
	}
	err = check(t, strict)
	if !errors.Is(err, fpgahost.ErrDeviceDown) || !errors.Is(err, scoring.ErrBackend) || !strings.Contains(err.Error(), `"strict"`) ||
		!strings.Contains(err.Error(), "fallback is off") {
		t.Fatalf("strict deployment on a stuck card: %v, want ErrDeviceDown and ErrBackend naming the deployment", err)
	}
	stats(t, h, "strict", agent.DeviceStats{Backend: fpgahost.BackendFPGA, Faults: 1})

	if err := check(t, lenient); err != nil {
		t.Fatalf("deployment allowing the CPU fallback on a stuck card: %v", err)
	}
	stats(t, h, "lenient", agent.DeviceStats{Backend: fpgahost.BackendCPUFallback, Faults: 1, Fallbacks: 1})
}

func TestHostFallbackDefault(t *testing.T) {
	card, target := emulator(t, emu.Config{})
	model, calib := files(t)
	h, err := fpgahost.Open(context.Background(), fpgahost.Config{Target: target, FallbackCPU: true,
		Calibration: map[string]string{"": calib}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r, err := h.Open(context.Background(), spec("d", false), model)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := card.Inject(emu.FaultDeviceLost, 0); err != nil {
		t.Fatal(err)
	}
	if err := check(t, r); err != nil {
		t.Fatalf("Config.FallbackCPU on a lost card: %v", err)
	}
	// Two faults: the first attempt and the one after reconnecting.
	stats(t, h, "d", agent.DeviceStats{Backend: fpgahost.BackendCPUFallback, Faults: 2, Fallbacks: 1})
}

func TestNoCalibration(t *testing.T) {
	_, target := emulator(t, emu.Config{})
	model, calib := files(t)
	h := openHost(t, target, calib)
	sp := spec("d", false)
	sp.Model.Name = "other"
	_, err := h.Open(context.Background(), sp, model)
	if !errors.Is(err, fpgahost.ErrNoCalibration) || !strings.Contains(err.Error(), `"other"`) || !strings.Contains(err.Error(), "--fpga-calibration") {
		t.Fatalf("Open without calibration: %v, want ErrNoCalibration naming the model and the flag", err)
	}
	if len(h.DeviceStats()) != 0 {
		t.Fatalf("a failed open left stats: %v", h.DeviceStats())
	}
}

func TestCardRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fpga.sock")
	serve := func() (stop func()) {
		dev, err := emu.NewDevice(emu.Config{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- emu.ServeDevice(ctx, l, dev, quiet()) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("emulator: %v", err)
			}
		}
	}
	stop := serve()
	model, calib := files(t)
	h := openHost(t, "unix:"+sock, calib)
	r, err := h.Open(context.Background(), spec("d", false), model)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := check(t, r); err != nil {
		t.Fatal(err)
	}
	// The emulator restarts: a new card with none of our programs.
	stop()
	stop = serve()
	defer func() { stop() }()
	if err := check(t, r); err != nil {
		t.Fatalf("first request to a restarted card: %v", err)
	}
	// One fault: the lost connection, after which the card was programmed
	// anew.
	stats(t, h, "d", agent.DeviceStats{Backend: fpgahost.BackendFPGA, Faults: 1})
	// The card goes away for good: the request fails, naming the card.
	stop()
	stop = func() {}
	err = check(t, r)
	if !errors.Is(err, fpgahost.ErrDeviceDown) || !errors.Is(err, scoring.ErrBackend) || !strings.Contains(err.Error(), "reprogramming the card failed") {
		t.Fatalf("request with the card gone: %v, want ErrDeviceDown saying reprogramming failed", err)
	}
	// With no backend left, the next request tries to reprogram again.
	stop = serve()
	if err := check(t, r); err != nil {
		t.Fatalf("request once the card is back: %v", err)
	}
}

// TestConcurrentRunsAcrossRestart scores from several goroutines while the
// card restarts: every request either succeeds within tolerance or fails
// with ErrDeviceDown, and once the card is back every request succeeds.
func TestConcurrentRunsAcrossRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fpga.sock")
	serve := func() (stop func()) {
		dev, err := emu.NewDevice(emu.Config{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- emu.ServeDevice(ctx, l, dev, quiet()) }()
		return func() { cancel(); <-done }
	}
	stop := serve()
	model, calib := files(t)
	h := openHost(t, "unix:"+sock, calib)
	r, err := h.Open(context.Background(), spec("d", false), model)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := check(t, r); err != nil && !errors.Is(err, fpgahost.ErrDeviceDown) {
					errs <- fmt.Errorf("goroutine %d: %w", g, err)
				}
			}
		}()
	}
	stop()
	stop = serve()
	defer func() { stop() }()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range 3 {
		if err := check(t, r); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	if st := h.DeviceStats()["d"]; st.Backend != fpgahost.BackendFPGA {
		t.Fatalf("DeviceStats = %+v, want backend fpga", st)
	}
}
