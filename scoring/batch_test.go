package scoring

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// sumRunner is a small Go backend for unit tests of queueing and batching:
// for x of shape [n, k] it returns y of shape [n, 1] with the row sums, and
// it records the batch sizes it saw. If gate is set, each run first
// announces itself on started and waits for gate.
type sumRunner struct {
	sig     Signature
	started chan struct{}
	gate    chan struct{}

	mu      sync.Mutex
	batches []int64
	closed  bool
}

func newSumRunner(width int64) *sumRunner {
	return &sumRunner{sig: Signature{
		Inputs:  []TensorSpec{{Name: "x", DataType: Float32, Shape: []int64{Dynamic, width}}},
		Outputs: []TensorSpec{{Name: "y", DataType: Float32, Shape: []int64{Dynamic, 1}}},
	}}
}

func (r *sumRunner) Signature() Signature { return r.sig }

func (r *sumRunner) Run(ctx context.Context, in []Tensor) ([]Tensor, error) {
	if r.gate != nil {
		r.started <- struct{}{}
		<-r.gate
	}
	x := in[0].Data.([]float32)
	n, k := in[0].Shape[0], in[0].Shape[1]
	y := make([]float32, n)
	for i := range n {
		for j := range k {
			y[i] += x[i*k+j]
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, n)
	r.mu.Unlock()
	return []Tensor{{Name: "y", DataType: Float32, Shape: []int64{n, 1}, Data: y}}, nil
}

func (r *sumRunner) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func rows(n int, k int64, base float32) Tensor {
	d := make([]float32, int64(n)*k)
	for i := range d {
		d[i] = base
	}
	return Tensor{Name: "x", DataType: Float32, Shape: []int64{int64(n), k}, Data: d}
}

func TestBatcherMergesAndSplits(t *testing.T) {
	r := newSumRunner(Dynamic)
	// MaxDelay is far longer than the test: the batch closes because it is full.
	b := newBatcher(r, BatchConfig{MaxBatch: 4, MaxDelay: time.Hour, Workers: 1}, newVersionMetrics())
	defer b.close()
	var wg sync.WaitGroup
	sizes := []int{1, 2, 3, 1}
	got := make([][]float32, len(sizes))
	errs := make([]error, len(sizes))
	for i, n := range sizes {
		wg.Go(func() {
			out, err := b.submit(context.Background(), []Tensor{rows(n, 2, float32(i+1))})
			errs[i] = err
			if err == nil {
				if s := out[0].Shape; s[0] != int64(n) || s[1] != 1 {
					errs[i] = errors.New("wrong output shape")
				}
				got[i] = out[0].Data.([]float32)
			}
		})
	}
	wg.Wait()
	for i, n := range sizes {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		want := slices.Repeat([]float32{2 * float32(i+1)}, n)
		if !slices.Equal(got[i], want) {
			t.Errorf("request %d: got %v, want %v", i, got[i], want)
		}
	}
	if !slices.Equal(r.batches, []int64{7}) {
		t.Errorf("runs with batch rows %v, want one run of 7 rows", r.batches)
	}
}

func TestBatcherGroupsByTrailingShape(t *testing.T) {
	r := newSumRunner(Dynamic)
	r.sig.Inputs[0].Shape = []int64{Dynamic, Dynamic}
	b := newBatcher(r, BatchConfig{MaxBatch: 2, MaxDelay: time.Hour, Workers: 1}, newVersionMetrics())
	defer b.close()
	var wg sync.WaitGroup
	for _, k := range []int64{2, 3} {
		wg.Go(func() {
			out, err := b.submit(context.Background(), []Tensor{rows(1, k, 1)})
			if err != nil {
				t.Errorf("width %d: %v", k, err)
				return
			}
			if y := out[0].Data.([]float32)[0]; y != float32(k) {
				t.Errorf("width %d: sum %v, want %d", k, y, k)
			}
		})
	}
	wg.Wait()
	if len(r.batches) != 2 {
		t.Errorf("%d runs, want 2 (different widths are not merged)", len(r.batches))
	}
}

func TestBatcherNotBatchable(t *testing.T) {
	r := newSumRunner(2)
	r.sig.Outputs[0].Shape = []int64{3, 1} // fixed first dim: no batching
	b := newBatcher(r, BatchConfig{MaxBatch: 8, Workers: 1}, newVersionMetrics())
	defer b.close()
	if b.batchable {
		t.Fatal("batchable with a fixed output dimension")
	}
}

func TestBatcherQueueFullAndDeadline(t *testing.T) {
	r := newSumRunner(2)
	r.started, r.gate = make(chan struct{}), make(chan struct{})
	b := newBatcher(r, BatchConfig{MaxBatch: 1, QueueSize: 2, Workers: 1}, newVersionMetrics())
	defer b.close()

	first := make(chan error, 1)
	go func() {
		_, err := b.submit(context.Background(), []Tensor{rows(1, 2, 1)})
		first <- err
	}()
	<-r.started // the only worker is busy

	expiring, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 2)
	go func() {
		_, err := b.submit(expiring, []Tensor{rows(1, 2, 1)})
		queued <- err
	}()
	go func() {
		_, err := b.submit(context.Background(), []Tensor{rows(1, 2, 1)})
		queued <- err
	}()
	// Wait until both are queued.
	for len(b.queue) < 2 {
		runtime.Gosched()
	}
	_, err := b.submit(context.Background(), []Tensor{rows(1, 2, 1)})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("submit on a full queue = %v, want ErrQueueFull", err)
	}
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request = %v, want context.Canceled", err)
	}
	close(r.gate)
	<-r.started // the live queued request runs; the canceled one is skipped
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 2 {
		t.Errorf("%d runs, want 2 (the canceled request must not run)", len(r.batches))
	}
}

func TestRegistryLoadSwapUnload(t *testing.T) {
	reg, err := NewRegistry(RegistryConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r1, r2 := newSumRunner(2), newSumRunner(2)
	v, err := reg.Load(ctx, "m", "", r1)
	if err != nil || v != "1" {
		t.Fatalf("Load = %q, %v; want version 1", v, err)
	}
	if len(r1.batches) != 1 {
		t.Errorf("warm-up runs %d, want 1", len(r1.batches))
	}
	if _, err := reg.Load(ctx, "m", "1", newSumRunner(2)); !errors.Is(err, ErrExists) {
		t.Errorf("Load duplicate = %v, want ErrExists", err)
	}
	held, err := reg.Acquire("m", "")
	if err != nil {
		t.Fatal(err)
	}
	swapped := make(chan error, 1)
	go func() {
		_, err := reg.Swap(ctx, "m", "", r2)
		swapped <- err
	}()
	// The held version keeps serving until released.
	if _, err := held.Infer(ctx, []Tensor{rows(1, 2, 1)}); err != nil {
		t.Fatalf("infer on draining version: %v", err)
	}
	for {
		v, err := reg.Acquire("m", "")
		if err != nil {
			t.Fatal(err)
		}
		cur := v.Version
		v.Release()
		if cur == "2" {
			break
		}
	}
	held.Release()
	if err := <-swapped; err != nil {
		t.Fatal(err)
	}
	if !r1.closed {
		t.Error("old version not closed after drain")
	}
	if _, err := reg.Acquire("m", "1"); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("Acquire old = %v, want ErrModelNotFound", err)
	}
	if info := reg.Models(); len(info) != 1 || info[0].Current != "2" || !slices.Equal(info[0].Versions, []string{"2"}) {
		t.Errorf("Models = %+v", info)
	}
	if err := reg.Unload(ctx, "m", "2"); err != nil {
		t.Fatal(err)
	}
	if !r2.closed || len(reg.Models()) != 0 {
		t.Error("unload did not close or remove")
	}
}
