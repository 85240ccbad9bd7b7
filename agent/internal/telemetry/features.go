package telemetry

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// Wrap returns r wrapped so that every Run observes its inputs as spec's
// MonitorOptions say (feature summaries unless disabled, payload capture
// if capture_fraction > 0), or r itself when there is nothing to observe.
// It also records spec's model digest for the deployment's telemetry. The
// wrapper forwards Signature, Run and Close; the registry closes it as it
// would r. Safe for concurrent use.
func (c *Collector) Wrap(spec *agentv1.DeploymentSpec, r scoring.Runner) scoring.Runner {
	k := key{spec.GetName(), spec.GetModel().GetVersion()}
	mon := spec.GetMonitor()
	frac := mon.GetCaptureFraction()
	if c.cfg.CaptureBytes < 0 || math.IsNaN(frac) || frac < 0 {
		frac = 0
	}
	frac = min(frac, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := spec.GetModel().GetSha256(); d != c.wrapped[k] {
		c.pinDigestsLocked(k)
		c.wrapped[k] = d
	}
	if mon.GetDisableFeatures() && frac == 0 {
		return r
	}
	maxF := int(mon.GetMaxFeatures())
	if maxF == 0 {
		maxF = DefaultMaxFeatures
	}
	if mon.GetDisableFeatures() {
		maxF = 0
	}
	sig := r.Signature()
	o := c.obs[k]
	if o == nil || o.maxFeatures != maxF || o.fraction != frac || !sameInputs(o.inputs, sig.Inputs) {
		// A new observer for new options; what the old one holds is still
		// collected (under its own key it would be lost, so keep it until
		// taken: take merges shards, and a replaced observer is dropped
		// only after that).
		if o != nil {
			c.retired = append(c.retired, retiredObs{k, o})
		}
		o = newObserver(c, maxF, frac, sig.Inputs)
		c.obs[k] = o
	}
	o.refs.Add(1)
	return &runner{Runner: r, o: o}
}

func sameInputs(a []string, b []scoring.TensorSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i].Name {
			return false
		}
	}
	return true
}

type runner struct {
	scoring.Runner
	o      *observer
	closed atomic.Bool
	live   atomic.Bool // a run that was not the registry's warm-up has been seen
}

func (r *runner) Run(ctx context.Context, inputs []scoring.Tensor) ([]scoring.Tensor, error) {
	if r.live.Load() || !isWarmUp(inputs) {
		r.live.Store(true)
		r.o.observe(inputs)
	}
	return r.Runner.Run(ctx, inputs)
}

// isWarmUp reports whether inputs look like the registry's default warm-up
// (scoring.Signature.OneInputs or ZeroInputs: one sample, every element 1,
// or every element 0). Only runs before the first other run are checked, so
// a production request is skipped only if it is the very first one and
// holds nothing but ones or nothing but zeros.
func isWarmUp(inputs []scoring.Tensor) bool {
	var want float64 = -1
	for _, t := range inputs {
		if len(t.Shape) > 0 && t.Shape[0] != 1 {
			return false
		}
		n := t.Len()
		for i := range n {
			x, ok := elem(t.Data, i)
			if !ok {
				break // bool and other non-numeric inputs do not decide
			}
			if want < 0 {
				want = x
			}
			if x != want || (x != 0 && x != 1) {
				return false
			}
		}
	}
	return want >= 0
}

func elem(d any, i int) (float64, bool) {
	switch v := d.(type) {
	case []float32:
		return float64(v[i]), true
	case []float64:
		return v[i], true
	case []int8:
		return float64(v[i]), true
	case []int16:
		return float64(v[i]), true
	case []int32:
		return float64(v[i]), true
	case []int64:
		return float64(v[i]), true
	case []uint8:
		return float64(v[i]), true
	case []uint16:
		return float64(v[i]), true
	case []uint32:
		return float64(v[i]), true
	case []uint64:
		return float64(v[i]), true
	}
	return 0, false
}

func (r *runner) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.o.refs.Add(-1)
	}
	return r.Runner.Close()
}

// observer accumulates one (deployment, version)'s inputs in shards.
type observer struct {
	c           *Collector
	maxFeatures int
	fraction    float64
	inputs      []string
	refs        atomic.Int32 // open wrappers
	next        atomic.Uint32
	shards      []shard

	capMu sync.Mutex
	caps  [][]byte
}

type shard struct {
	mu  sync.Mutex
	acc [][]feature // per input, per element index
	_   [40]byte    // keep neighbouring shards' mutexes off one cache line
}

func newObserver(c *Collector, maxF int, frac float64, ins []scoring.TensorSpec) *observer {
	o := &observer{c: c, maxFeatures: maxF, fraction: frac, shards: make([]shard, shards())}
	for _, in := range ins {
		o.inputs = append(o.inputs, in.Name)
	}
	for i := range o.shards {
		o.shards[i].acc = make([][]feature, len(ins))
	}
	return o
}

// feature is the running summary of one element position.
type feature struct {
	n        uint64
	mean, m2 float64
	min, max float64
	nan      uint64
	sk       sketcher
}

func (f *feature) add(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		f.nan++
		return
	}
	f.n++
	if f.n == 1 {
		f.mean, f.m2, f.min, f.max = x, 0, x, x
	} else {
		d := x - f.mean
		f.mean += d / float64(f.n)
		f.m2 += d * (x - f.mean)
		f.min, f.max = min(f.min, x), max(f.max, x)
	}
	f.sk.add(x)
}

// merge adds g's moments to f (Chan et al.'s parallel update) and its
// sketch to sk.
func (f *feature) merge(g *feature, sk **sketch.Sketch) {
	f.nan += g.nan
	if s := g.sk.sketch(); s != nil {
		if *sk == nil {
			*sk = s
		} else {
			(*sk).Merge(s)
		}
	}
	if g.n == 0 {
		return
	}
	if f.n == 0 {
		f.n, f.mean, f.m2, f.min, f.max = g.n, g.mean, g.m2, g.min, g.max
		return
	}
	n := f.n + g.n
	d := g.mean - f.mean
	f.mean += d * float64(g.n) / float64(n)
	f.m2 += g.m2 + d*d*float64(f.n)*float64(g.n)/float64(n)
	f.min, f.max = min(f.min, g.min), max(f.max, g.max)
	f.n = n
}

type number interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

func addRows[T number](acc []feature, data []T, rows, per int) {
	m := len(acc)
	for r := range rows {
		row := data[r*per : r*per+m]
		for j, x := range row {
			acc[j].add(float64(x))
		}
	}
}

// rows returns the batch size and elements per sample of t.
func rows(t scoring.Tensor, n int) (int, int) {
	if len(t.Shape) == 0 || t.Shape[0] <= 0 {
		return 1, n
	}
	r := int(t.Shape[0])
	if n%r != 0 {
		return 1, n
	}
	return r, n / r
}

func (o *observer) observe(inputs []scoring.Tensor) {
	if o.maxFeatures > 0 {
		sh := &o.shards[int(o.next.Add(1))%len(o.shards)]
		sh.mu.Lock()
		for i, t := range inputs {
			if i >= len(sh.acc) {
				break
			}
			n := t.Len()
			if n <= 0 {
				continue
			}
			nr, per := rows(t, n)
			m := min(per, o.maxFeatures)
			if len(sh.acc[i]) < m {
				sh.acc[i] = append(sh.acc[i], make([]feature, m-len(sh.acc[i]))...)
			}
			acc := sh.acc[i][:m]
			switch d := t.Data.(type) {
			case []float32:
				addRows(acc, d, nr, per)
			case []float64:
				addRows(acc, d, nr, per)
			case []int8:
				addRows(acc, d, nr, per)
			case []int16:
				addRows(acc, d, nr, per)
			case []int32:
				addRows(acc, d, nr, per)
			case []int64:
				addRows(acc, d, nr, per)
			case []uint8:
				addRows(acc, d, nr, per)
			case []uint16:
				addRows(acc, d, nr, per)
			case []uint32:
				addRows(acc, d, nr, per)
			case []uint64:
				addRows(acc, d, nr, per)
			}
		}
		sh.mu.Unlock()
	}
	if o.fraction > 0 {
		o.capture(inputs)
	}
}

// v2Input is one input of a KServe v2 inference request body.
type v2Input struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	Data     any     `json:"data"`
}

type v2Request struct {
	Inputs []v2Input `json:"inputs"`
}

func (o *observer) capture(inputs []scoring.Tensor) {
	if len(inputs) == 0 {
		return
	}
	nr, _ := rows(inputs[0], inputs[0].Len())
	for r := range nr {
		if o.fraction < 1 && rand.Float64() >= o.fraction {
			continue
		}
		req := v2Request{Inputs: make([]v2Input, 0, len(inputs))}
		for _, t := range inputs {
			n := t.Len()
			tr, per := rows(t, n)
			if tr != nr {
				tr, per = 1, n // not batched along with the others: whole tensor
			}
			shape := []int64{1}
			if len(t.Shape) > 1 {
				shape = append(shape, t.Shape[1:]...)
			}
			if tr == 1 && len(t.Shape) > 0 {
				shape = t.Shape
			}
			start := r * per
			if tr == 1 {
				start = 0
			}
			req.Inputs = append(req.Inputs, v2Input{Name: t.Name, Datatype: t.DataType.String(), Shape: shape, Data: sliceOf(t.Data, start, start+per)})
		}
		b, err := json.Marshal(req)
		if err != nil {
			continue // NaN or ±Inf have no JSON form: not capturable
		}
		if o.c.captured.Add(int64(len(b))) > int64(o.c.cfg.CaptureBytes) {
			o.c.captured.Add(-int64(len(b)))
			o.c.skipped.Add(1)
			continue
		}
		o.capMu.Lock()
		o.caps = append(o.caps, b)
		o.capMu.Unlock()
	}
}

func sliceOf(d any, i, j int) any {
	switch v := d.(type) {
	case []float32:
		return v[i:j]
	case []float64:
		return v[i:j]
	case []int8:
		return v[i:j]
	case []int16:
		return v[i:j]
	case []int32:
		return v[i:j]
	case []int64:
		return v[i:j]
	case []uint8:
		// A []uint8 would marshal as base64; the v2 body wants numbers.
		out := make([]uint16, j-i)
		for k, x := range v[i:j] {
			out[k] = uint16(x)
		}
		return out
	case []uint16:
		return v[i:j]
	case []uint32:
		return v[i:j]
	case []uint64:
		return v[i:j]
	case []bool:
		return v[i:j]
	}
	return nil
}

// take returns the summaries and captures accumulated since the last take
// and resets them.
func (o *observer) take() ([]*agentv1.FeatureSummary, [][]byte) {
	var feats []*agentv1.FeatureSummary
	if o.maxFeatures > 0 {
		merged := make([][]feature, len(o.inputs))
		sketches := make([][]*sketch.Sketch, len(o.inputs))
		for s := range o.shards {
			sh := &o.shards[s]
			sh.mu.Lock()
			taken := sh.acc
			sh.acc = make([][]feature, len(taken))
			sh.mu.Unlock()
			for i, acc := range taken {
				if len(merged[i]) < len(acc) {
					merged[i] = append(merged[i], make([]feature, len(acc)-len(merged[i]))...)
					sketches[i] = append(sketches[i], make([]*sketch.Sketch, len(acc)-len(sketches[i]))...)
				}
				for j := range acc {
					merged[i][j].merge(&acc[j], &sketches[i][j])
				}
			}
		}
		for i, fs := range merged {
			for j := range fs {
				f := &fs[j]
				if f.n == 0 && f.nan == 0 {
					continue
				}
				fsum := &agentv1.FeatureSummary{Input: o.inputs[i], Index: uint32(j), Count: f.n, NanCount: f.nan,
					Mean: f.mean, M2: f.m2, Min: f.min, Max: f.max}
				if sk := sketches[i][j]; sk != nil {
					fsum.Sketch = sk.Proto()
				}
				feats = append(feats, fsum)
			}
		}
	}
	o.capMu.Lock()
	caps := o.caps
	o.caps = nil
	o.capMu.Unlock()
	return feats, caps
}
