package scoring

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"
)

// BatchConfig sets how one model version queues and batches requests.
type BatchConfig struct {
	// MaxBatch is the most requests merged into one run (default 8). 1
	// disables batching. Models whose inputs and outputs do not all have a
	// dynamic first dimension are never batched.
	MaxBatch int
	// MaxDelay is how long a worker holding a request waits for more to
	// fill a batch. 0 (the default) merges only requests that are already
	// queued: no added latency, and batches still form under load.
	MaxDelay time.Duration
	// QueueSize bounds the requests waiting for a worker (default 128).
	// When it is full, requests fail at once with ErrQueueFull.
	QueueSize int
	// Workers is the most runs at once. The default is 1 for batched
	// models (requests queue up during a run and the next run takes them
	// all; ONNX Runtime's intra-op threads parallelize within a run) and
	// GOMAXPROCS for the others.
	Workers int
}

func (c BatchConfig) withDefaults() BatchConfig {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 8
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 128
	}
	return c
}

// Validate names the first bad field.
func (c BatchConfig) Validate() error {
	switch {
	case c.MaxBatch < 0:
		return fmt.Errorf("batch config: max batch %d: %w: want >= 0", c.MaxBatch, ErrInvalidInput)
	case c.MaxDelay < 0:
		return fmt.Errorf("batch config: max delay %s: %w: want >= 0", c.MaxDelay, ErrInvalidInput)
	case c.QueueSize < 0:
		return fmt.Errorf("batch config: queue size %d: %w: want >= 0", c.QueueSize, ErrInvalidInput)
	case c.Workers < 0:
		return fmt.Errorf("batch config: workers %d: %w: want >= 0", c.Workers, ErrInvalidInput)
	}
	return nil
}

type job struct {
	ctx      context.Context
	inputs   []Tensor
	enqueued time.Time
	done     chan result
}

type result struct {
	outputs []Tensor
	err     error
}

// batcher runs requests for one Runner through a bounded queue, merging
// requests along the first dimension.
//
// There are no long-lived worker goroutines: up to Workers tokens allow
// runs at once. A request enqueues itself and, if it gets a token, its own
// goroutine drains the queue (its own job and whatever else is queued, in
// batches). So a lone request runs without a goroutine hand-off, and under
// load the token holders find the queue full and batch. A holder whose
// own job is done hands the rest of the queue to a new goroutine. Every
// holder re-checks the queue after giving its token back, so no job is
// left behind.
type batcher struct {
	runner    Runner
	batchable bool
	cfg       BatchConfig
	queue     chan *job
	tokens    chan struct{}
	metrics   *versionMetrics
}

func newBatcher(r Runner, cfg BatchConfig, m *versionMetrics) *batcher {
	cfg = cfg.withDefaults()
	batchable := cfg.MaxBatch > 1 && r.Signature().Batchable()
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
		if batchable {
			cfg.Workers = 1
		}
	}
	return &batcher{
		runner:    r,
		batchable: batchable,
		cfg:       cfg,
		queue:     make(chan *job, cfg.QueueSize),
		tokens:    make(chan struct{}, cfg.Workers),
		metrics:   m,
	}
}

// close waits for the runs in progress. No submit may be running or follow
// (the registry's drain guarantees it).
func (b *batcher) close() {
	for range cap(b.tokens) {
		b.tokens <- struct{}{}
	}
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan result, 1)} }}

// submit queues validated inputs and waits for the result or ctx.
func (b *batcher) submit(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	j := jobPool.Get().(*job)
	j.ctx, j.inputs, j.enqueued = ctx, inputs, time.Now()
	select {
	case b.queue <- j:
	default:
		j.ctx, j.inputs = nil, nil
		jobPool.Put(j)
		return nil, fmt.Errorf("%w: %d requests waiting", ErrQueueFull, b.cfg.QueueSize)
	}
	if b.tryToken() {
		b.drainUntil(j)
	}
	select {
	case r := <-j.done:
		j.ctx, j.inputs = nil, nil
		jobPool.Put(j) // done was drained: safe to reuse
		return r.outputs, r.err
	case <-ctx.Done():
		// A token holder still owns j and will send to done (buffered);
		// j is left to the garbage collector.
		return nil, ctx.Err()
	}
}

func (b *batcher) tryToken() bool {
	select {
	case b.tokens <- struct{}{}:
		return true
	default:
		return false
	}
}

// drainUntil runs batches from the queue with a token held until own has
// been answered, then passes the token on: to a goroutine if jobs are
// left, else back.
func (b *batcher) drainUntil(own *job) {
	for len(own.done) == 0 {
		if !b.runBatch() {
			break // own was taken by an expired check or another holder
		}
	}
	if len(b.queue) > 0 {
		go b.drainAll()
		return
	}
	b.release()
}

// drainAll runs batches until the queue is empty, then releases the token.
func (b *batcher) drainAll() {
	for b.runBatch() {
	}
	b.release()
}

// release gives the token back and takes it again if jobs arrived in the
// meantime (their submitters may have found no token).
func (b *batcher) release() {
	for {
		<-b.tokens
		if len(b.queue) == 0 || !b.tryToken() {
			return
		}
		for b.runBatch() {
		}
	}
}

// runBatch takes one batch from the queue and runs it. It reports false if
// the queue was empty.
func (b *batcher) runBatch() bool {
	var first *job
	select {
	case first = <-b.queue:
	default:
		return false
	}
	batch := []*job{first}
	if b.batchable {
		var timer <-chan time.Time
		if b.cfg.MaxDelay > 0 {
			t := time.NewTimer(b.cfg.MaxDelay)
			defer t.Stop()
			timer = t.C
		}
	collect:
		for len(batch) < b.cfg.MaxBatch {
			if timer == nil {
				select {
				case j := <-b.queue:
					batch = append(batch, j)
				default:
					break collect
				}
				continue
			}
			select {
			case j := <-b.queue:
				batch = append(batch, j)
			case <-timer:
				break collect
			}
		}
	}
	b.run(batch)
	return true
}

// run answers every job in batch: expired ones with their context error,
// the rest in groups of requests with the same non-batch dimensions.
func (b *batcher) run(batch []*job) {
	start := time.Now()
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- result{err: fmt.Errorf("expired after %s in queue: %w", start.Sub(j.enqueued).Round(time.Microsecond), err)}
			continue
		}
		live = append(live, j)
	}
	for len(live) > 0 {
		group, rest := live[:1], live[:0:0]
		for _, j := range live[1:] {
			if sameTrailingShapes(group[0].inputs, j.inputs) {
				group = append(group, j)
			} else {
				rest = append(rest, j)
			}
		}
		b.runGroup(group)
		live = rest
	}
}

func sameTrailingShapes(a, b []Tensor) bool {
	for i := range a {
		if !slices.Equal(a[i].Shape[1:], b[i].Shape[1:]) {
			return false
		}
	}
	return true
}

func (b *batcher) runGroup(group []*job) {
	start := time.Now()
	for _, j := range group {
		b.metrics.queue.observe(start.Sub(j.enqueued).Seconds())
	}
	b.metrics.batch.observe(float64(len(group)))
	if len(group) == 1 {
		// One request: its deadline can stop the run.
		out, err := b.runner.Run(group[0].ctx, group[0].inputs)
		b.metrics.compute.observe(time.Since(start).Seconds())
		group[0].done <- result{outputs: out, err: err}
		return
	}
	nIn := len(group[0].inputs)
	merged := make([]Tensor, nIn)
	rows := make([]int64, len(group))
	var total int64
	for k, j := range group {
		rows[k] = j.inputs[0].Shape[0]
		total += rows[k]
	}
	parts := make([]any, len(group))
	for i := range nIn {
		first := group[0].inputs[i]
		for k, j := range group {
			parts[k] = j.inputs[i].Data
		}
		shape := slices.Clone(first.Shape)
		shape[0] = total
		merged[i] = Tensor{Name: first.Name, DataType: first.DataType, Shape: shape, Data: concatData(first.DataType, parts)}
	}
	out, err := b.runner.Run(context.WithoutCancel(group[0].ctx), merged)
	b.metrics.compute.observe(time.Since(start).Seconds())
	if err == nil {
		err = checkBatchOutputs(out, total)
	}
	if err != nil {
		for _, j := range group {
			j.done <- result{err: err}
		}
		return
	}
	var off int64
	for k, j := range group {
		res := make([]Tensor, len(out))
		for o, t := range out {
			stride := int64(numElements(t.Shape[1:]))
			shape := slices.Clone(t.Shape)
			shape[0] = rows[k]
			res[o] = Tensor{Name: t.Name, DataType: t.DataType, Shape: shape, Data: sliceData(t.Data, int(off*stride), int((off+rows[k])*stride))}
		}
		off += rows[k]
		j.done <- result{outputs: res}
	}
}

var errBatchShape = errors.New("batched output does not match the batch")

func checkBatchOutputs(out []Tensor, total int64) error {
	for _, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return fmt.Errorf("%w: %w: output %q has shape %s, want first dimension %d", ErrBackend, errBatchShape, t.Name, shapeString(t.Shape), total)
		}
	}
	return nil
}
