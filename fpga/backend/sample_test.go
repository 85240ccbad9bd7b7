package backend_test

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/testbench/sample"
)

var (
	sampleOnce           sync.Once
	sampleModel, heldout []byte
	sampleErr            error
)

// trainSample trains the sample digits MLP (testbench/sample/train) in a
// temp copy with a few epochs and returns model.onnx and heldout.csv.
func trainSample(t *testing.T) ([]byte, []byte) {
	t.Helper()
	sampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "atelier-fpga-sample-*")
		if err != nil {
			sampleErr = err
			return
		}
		defer os.RemoveAll(dir)
		err = sample.CopyProgram(dir)
		if err != nil {
			sampleErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "run", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "ATELIER_PARAM_EPOCHS=10", "ATELIER_PARAM_HIDDEN=32", "GOWORK=off", "GOFLAGS=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			sampleErr = err
			sampleErr = &trainErr{err: err, out: out.String()}
			return
		}
		if sampleModel, sampleErr = os.ReadFile(filepath.Join(dir, "outputs", "model.onnx")); sampleErr != nil {
			return
		}
		heldout, sampleErr = os.ReadFile(filepath.Join(dir, "outputs", "heldout.csv"))
	})
	if sampleErr != nil {
		t.Fatalf("training the sample model: %v", sampleErr)
	}
	return sampleModel, heldout
}

type trainErr struct {
	err error
	out string
}

func (e *trainErr) Error() string { return e.err.Error() + "\n" + e.out }

func TestSampleModelAccuracy(t *testing.T) {
	model, csv := trainSample(t)
	calib, err := compiler.ReadCalibration(bytes.NewReader(csv), 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(calib) != 360 {
		t.Fatalf("%d held-out rows, want 360", len(calib))
	}
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: calib}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	art := r.Artifact()
	t.Logf("device: %s", strings.Join(art.DeviceOps, "; "))
	t.Logf("cpu: %s", strings.Join(art.Unsupported, "; "))
	if len(art.DeviceOps) != 3 || art.Full() || art.Plan.Output != "logits" {
		t.Fatalf("partition: device %v, cut %q, want scale + 2 dense layers up to \"logits\"", art.DeviceOps, art.Plan.Output)
	}
	for _, op := range []string{"Softmax", "ArgMax"} {
		if !strings.Contains(strings.Join(art.Unsupported, "\n"), op) {
			t.Errorf("unsupported list %v does not name %s", art.Unsupported, op)
		}
	}
	x := make([]float32, 0, 360*64)
	for _, s := range calib {
		x = append(x, s...)
	}
	in := []scoring.Tensor{{Name: "pixels", DataType: scoring.Float32, Shape: []int64{360, 64}, Data: x}}
	got, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuRun(t, model, in)
	gp, wp := got[0].Data.([]float32), want[0].Data.([]float32)
	gl, wl := got[1].Data.([]int64), want[1].Data.([]int64)
	if len(gl) != 360 || len(gp) != 3600 {
		t.Fatalf("outputs %v %v", got[0].Shape, got[1].Shape)
	}
	agree := 0
	for i := range gl {
		if gl[i] == wl[i] {
			agree++
		}
	}
	var maxErr float64
	for i := range gp {
		maxErr = math.Max(maxErr, math.Abs(float64(gp[i]-wp[i])))
	}
	st := r.Stats()
	t.Logf("top-1 agreement with CPU ONNX Runtime %d/360 (%.2f%%), max abs probability error %.4g, %d cycles = %v device time for 360 rows",
		agree, 100*float64(agree)/360, maxErr, st.Cycles, st.DeviceTime)
	if float64(agree)/360 < 0.99 {
		t.Errorf("top-1 agreement %d/360 is below 99%%", agree)
	}
	if maxErr > 0.1 {
		t.Errorf("max abs probability error %g exceeds 0.1", maxErr)
	}
}

func TestSampleModelRequireFull(t *testing.T) {
	model, csv := trainSample(t)
	calib, err := compiler.ReadCalibration(bytes.NewReader(csv), 64, 50)
	if err != nil {
		t.Fatal(err)
	}
	_, dev := startEmulator(t, emu.Config{})
	_, err = backend.Open(context.Background(), dev, model, backend.Config{Calibration: calib, Compiler: compiler.Options{RequireFull: true}}, quiet())
	if err == nil || !strings.Contains(err.Error(), "Softmax") {
		t.Fatalf("RequireFull on the sample model: %v, want ErrPartial naming Softmax", err)
	}
}
