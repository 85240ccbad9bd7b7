package backend_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
)

func randRows(seed uint64, n, k int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(r.Float64()*2 - 1)
	}
	return x
}

func split(x []float32, k int) [][]float32 {
	var out [][]float32
	for i := 0; i+k <= len(x); i += k {
		out = append(out, x[i:i+k])
	}
	return out
}

func TestMLPFullyOnDevice(t *testing.T) {
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	model := onnxtest.MLP(40, []int{70, 33}, 5, 7) // K and N beyond one 32x32 tile
	calib := randRows(1, 64, 40)
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: split(calib, 40), Compiler: compiler.Options{Batch: 8, RequireFull: true}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Artifact().Full() || len(r.Artifact().Unsupported) != 0 {
		t.Fatalf("artifact not full: %+v", r.Artifact().Unsupported)
	}
	x := randRows(2, 37, 40) // not a multiple of the batch
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{37, 40}, Data: x}}
	got, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := onnxtest.MLPOutput(40, []int{70, 33}, 5, 7, x)
	g := got[0].Data.([]float32)
	if len(g) != len(want) || got[0].Shape[0] != 37 || got[0].Shape[1] != 5 {
		t.Fatalf("output shape %v, %d values", got[0].Shape, len(g))
	}
	var maxErr, maxRef float64
	for i := range want {
		maxErr = math.Max(maxErr, math.Abs(float64(g[i]-want[i])))
		maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
	}
	t.Logf("MLP 40-70-33-5: max abs error %.4g (max |output| %.3g)", maxErr, maxRef)
	if maxErr > 0.05*maxRef {
		t.Errorf("max abs error %g exceeds 5%% of the output range %g", maxErr, maxRef)
	}
	st := r.Stats()
	if st.Kernels != 1 || st.Cycles == 0 || st.DeviceTime <= 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultRecovery(t *testing.T) {
	ctx := context.Background()
	model := onnxtest.MLP(16, []int{12}, 3, 3)
	calib := split(randRows(4, 32, 16), 16)
	x := randRows(5, 4, 16)
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{4, 16}, Data: x}}
	want := onnxtest.MLPOutput(16, []int{12}, 3, 3, x)
	check := func(t *testing.T, out []scoring.Tensor) {
		t.Helper()
		g := out[0].Data.([]float32)
		for i := range want {
			if math.Abs(float64(g[i]-want[i])) > 0.05 {
				t.Fatalf("output %d = %g, want %g", i, g[i], want[i])
			}
		}
	}
	for _, f := range []fpga.Fault{fpga.FaultReset, fpga.FaultDMATimeout, fpga.FaultBitFlip} {
		t.Run("recovers from "+emu.Fault(f).String(), func(t *testing.T) {
			_, dev := startEmulator(t, emu.Config{})
			r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := dev.InjectFault(ctx, f, 0); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 5e9)
			defer cancel()
			out, err := r.Run(rctx, in)
			if err != nil {
				t.Fatal(err)
			}
			check(t, out)
			if st := r.Stats(); st.Retries != 1 || st.Fallbacks != 0 {
				t.Fatalf("stats %+v, want one retry", st)
			}
		})
	}
	t.Run("card that stays down after a reset fails clearly", func(t *testing.T) {
		_, dev := startEmulator(t, emu.Config{})
		r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := dev.InjectFault(ctx, fpga.FaultDMAStuck, 0); err != nil {
			t.Fatal(err)
		}
		_, err = r.Run(ctx, in)
		if !errors.Is(err, scoring.ErrBackend) || !errors.Is(err, fpga.ErrDMA) || !strings.Contains(err.Error(), "failed again after a reset") {
			t.Fatalf("Run on a stuck card: %v, want ErrBackend and ErrDMA after one retry", err)
		}
		if st := r.Stats(); st.Retries != 1 || st.Fallbacks != 0 {
			t.Fatalf("stats %+v, want one retry and no fallback", st)
		}
	})
	t.Run("card that stays down falls back to cpu", func(t *testing.T) {
		_, dev := startEmulator(t, emu.Config{})
		r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, FallbackCPU: true}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := dev.InjectFault(ctx, fpga.FaultDMAStuck, 0); err != nil {
			t.Fatal(err)
		}
		out, err := r.Run(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out)
		if st := r.Stats(); st.Retries != 1 || st.Fallbacks != 1 {
			t.Fatalf("stats %+v, want one retry, then the fallback", st)
		}
	})
	t.Run("device lost fails clearly", func(t *testing.T) {
		_, dev := startEmulator(t, emu.Config{})
		r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := dev.InjectFault(ctx, fpga.FaultDeviceLost, 0); err != nil {
			t.Fatal(err)
		}
		_, err = r.Run(ctx, in)
		if !errors.Is(err, scoring.ErrBackend) || !errors.Is(err, fpga.ErrDeviceLost) {
			t.Fatalf("Run on a lost device: %v, want ErrBackend and ErrDeviceLost", err)
		}
	})
	t.Run("device lost falls back to cpu", func(t *testing.T) {
		_, dev := startEmulator(t, emu.Config{})
		r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib, FallbackCPU: true}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := dev.InjectFault(ctx, fpga.FaultDeviceLost, 0); err != nil {
			t.Fatal(err)
		}
		out, err := r.Run(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out)
		if st := r.Stats(); st.Fallbacks != 1 {
			t.Fatalf("stats %+v, want one fallback", st)
		}
	})
}

func TestNothingOnDeviceRunsOnCPU(t *testing.T) {
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	m := onnxtest.MLPModel(6, []int{5}, 3, 1)
	m.Graph.Nodes = append([]onnx.Node{{Name: "sig", OpType: "Sigmoid", Inputs: []string{"input"}, Outputs: []string{"s"}}}, m.Graph.Nodes...)
	m.Graph.Nodes[1].Inputs[0] = "s"
	model, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: split(randRows(40, 8, 6), 6)}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Artifact().Image != nil {
		t.Fatal("a model starting with Sigmoid got a device program")
	}
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{2, 6}, Data: randRows(41, 2, 6)}}
	got, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuRun(t, model, in)
	for i, v := range want[0].Data.([]float32) {
		if got[0].Data.([]float32)[i] != v {
			t.Fatalf("output %d = %g, want %g (the whole model runs in ONNX Runtime)", i, got[0].Data.([]float32)[i], v)
		}
	}
	if st := r.Stats(); st.Runs != 0 {
		t.Fatalf("stats %+v: the device was used", st)
	}
}

// TestFaultMidJob injects faults at each step of the Run's device job
// (input copy, start, wait, output copy): the Runner resets, reloads and
// retries once and returns the right outputs.
func TestFaultMidJob(t *testing.T) {
	ctx := context.Background()
	model := onnxtest.MLP(16, []int{12}, 3, 3)
	calib := split(randRows(4, 32, 16), 16)
	x := randRows(5, 4, 16)
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{4, 16}, Data: x}}
	want := onnxtest.MLPOutput(16, []int{12}, 3, 3, x)
	cases := []struct {
		f     fpga.Fault
		after uint32
		step  string
	}{
		{fpga.FaultReset, 0, "write"}, {fpga.FaultReset, 1, "start"}, {fpga.FaultReset, 2, "wait"}, {fpga.FaultReset, 3, "read"},
		{fpga.FaultBitFlip, 1, "read"}, {fpga.FaultDMATimeout, 2, "read"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s on %s", emu.Fault(c.f), c.step), func(t *testing.T) {
			_, dev := startEmulator(t, emu.Config{})
			r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := dev.InjectFault(ctx, c.f, c.after); err != nil {
				t.Fatal(err)
			}
			out, err := r.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range out[0].Data.([]float32) {
				if math.Abs(float64(g-want[i])) > 0.05 {
					t.Fatalf("output %d = %g, want %g", i, g, want[i])
				}
			}
			if st := r.Stats(); st.Retries != 1 || st.Kernels < 1 {
				t.Fatalf("stats %+v, want one retry", st)
			}
		})
	}
}
