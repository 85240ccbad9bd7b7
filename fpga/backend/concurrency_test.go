package backend_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
)

func TestConcurrentRunsAgree(t *testing.T) {
	_, dev := startEmulator(t, emu.Config{})
	ctx := context.Background()
	model := onnxtest.MLP(12, []int{20}, 3, 5)
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: split(randRows(30, 32, 12), 12), Compiler: compiler.Options{Batch: 4}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	x := randRows(31, 5, 12)
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{5, 12}, Data: x}}
	first, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	ref := first[0].Data.([]float32)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				out, err := r.Run(ctx, in)
				if err != nil {
					errs <- err
					return
				}
				for j, v := range out[0].Data.([]float32) {
					if v != ref[j] {
						errs <- errors.New("concurrent runs gave different outputs: the device is not deterministic or runs interleaved")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Kernels != 41 {
		t.Fatalf("%d kernel starts, want 41", st.Kernels)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Run(cctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled run: %v", err)
	}
	bad := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{2, 12}, Data: x[:12]}}
	if _, err := r.Run(ctx, bad); !errors.Is(err, scoring.ErrInvalidInput) {
		t.Fatalf("short input: %v", err)
	}
}
