package backend_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
)

// emuSocketEnv makes the test binary run as the emulator process.
const emuSocketEnv = "ATELIER_FPGA_TEST_EMULATOR_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(emuSocketEnv); sock != "" {
		os.Exit(runEmulator(sock))
	}
	os.Exit(m.Run())
}

// runEmulator is the child process: serve until SIGTERM.
func runEmulator(sock string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := emu.Serve(ctx, l, emu.Config{Name: "subprocess-card"}, quiet()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startEmulatorProcess re-executes the test binary as an emulator and
// opens it once its socket accepts connections.
func startEmulatorProcess(t *testing.T) (*exec.Cmd, *fpga.Device) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "card.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), emuSocketEnv+"="+sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		d, err := fpga.Open(ctx, "unix:"+sock, fpga.Config{}, quiet())
		if err == nil {
			t.Cleanup(func() { d.Close() })
			return cmd, d
		}
		if ctx.Err() != nil {
			t.Fatalf("emulator process never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEndToEndEmulatorProcess(t *testing.T) {
	cmd, dev := startEmulatorProcess(t)
	ctx := context.Background()
	info, err := dev.Info(ctx)
	if err != nil || info.Name != "subprocess-card" {
		t.Fatalf("info %+v, %v", info, err)
	}
	model := onnxtest.MLP(20, []int{30}, 4, 9)
	calib := split(randRows(21, 40, 20), 20)
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, FallbackCPU: true}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	x := randRows(22, 9, 20)
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{9, 20}, Data: x}}
	want := onnxtest.MLPOutput(20, []int{30}, 4, 9, x)
	check := func(out []scoring.Tensor) {
		t.Helper()
		g := out[0].Data.([]float32)
		for i := range want {
			if d := g[i] - want[i]; d > 0.02 || d < -0.02 {
				t.Fatalf("output %d = %g, want %g", i, g[i], want[i])
			}
		}
	}
	out, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	check(out)
	if st := r.Stats(); st.Kernels != 1 || st.Fallbacks != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Kill the card's process: the runner falls back to the CPU.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	out, err = r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	check(out)
	if st := r.Stats(); st.Fallbacks != 1 {
		t.Fatalf("stats after the card died: %+v, want one fallback", st)
	}
	if _, err := dev.Info(ctx); !errors.Is(err, fpga.ErrDeviceLost) {
		t.Fatalf("info from a dead card: %v, want ErrDeviceLost", err)
	}
}
