package main

import (
	"math"
	"math/rand/v2"
)

// MLP is a one-hidden-layer perceptron: 64 scaled pixels → Hidden ReLU units
// → 10 logits, trained in float64. Weight matrices are row-major with the
// input dimension first (W1 is [Pixels][Hidden], W2 is [Hidden][Classes]),
// the layout ONNX Gemm takes without transposition.
type MLP struct {
	Hidden int
	W1, B1 []float64
	W2, B2 []float64

	vel [4][]float64 // momentum buffers for W1, B1, W2, B2
}

// NewMLP initializes weights with He initialization from rng and biases
// with zeros.
func NewMLP(hidden int, rng *rand.Rand) *MLP {
	m := &MLP{
		Hidden: hidden,
		W1:     make([]float64, Pixels*hidden),
		B1:     make([]float64, hidden),
		W2:     make([]float64, hidden*Classes),
		B2:     make([]float64, Classes),
	}
	s1, s2 := math.Sqrt(2.0/Pixels), math.Sqrt(2.0/float64(hidden))
	for i := range m.W1 {
		m.W1[i] = rng.NormFloat64() * s1
	}
	for i := range m.W2 {
		m.W2[i] = rng.NormFloat64() * s2
	}
	for i, p := range m.params() {
		m.vel[i] = make([]float64, len(p))
	}
	return m
}

func (m *MLP) params() [4][]float64 { return [4][]float64{m.W1, m.B1, m.W2, m.B2} }

// forward computes hidden pre-activations h, and class probabilities p for
// one sample; x receives the scaled input.
func (m *MLP) forward(s *Sample, x, h, p []float64) {
	for i, v := range s.Pixels {
		x[i] = float64(v) / MaxPixel
	}
	for j := 0; j < m.Hidden; j++ {
		h[j] = m.B1[j]
	}
	for i, xi := range x {
		if xi == 0 {
			continue
		}
		row := m.W1[i*m.Hidden : (i+1)*m.Hidden]
		for j, w := range row {
			h[j] += xi * w
		}
	}
	copy(p, m.B2)
	for j, hj := range h {
		if hj <= 0 {
			continue
		}
		row := m.W2[j*Classes : (j+1)*Classes]
		for k, w := range row {
			p[k] += hj * w
		}
	}
	softmax(p)
}

func softmax(z []float64) {
	max := z[0]
	for _, v := range z[1:] {
		max = math.Max(max, v)
	}
	sum := 0.0
	for i, v := range z {
		z[i] = math.Exp(v - max)
		sum += z[i]
	}
	for i := range z {
		z[i] /= sum
	}
}

// Gradients computes the mean softmax cross-entropy loss over batch and its
// gradients with respect to W1, B1, W2, B2, and counts correct predictions.
func (m *MLP) Gradients(batch []Sample) (grads [4][]float64, loss float64, correct int) {
	for i, p := range m.params() {
		grads[i] = make([]float64, len(p))
	}
	gW1, gB1, gW2, gB2 := grads[0], grads[1], grads[2], grads[3]
	x := make([]float64, Pixels)
	h := make([]float64, m.Hidden)
	p := make([]float64, Classes)
	dh := make([]float64, m.Hidden)
	for n := range batch {
		s := &batch[n]
		m.forward(s, x, h, p)
		loss -= math.Log(math.Max(p[s.Label], 1e-300))
		if argmax(p) == s.Label {
			correct++
		}
		p[s.Label]-- // dL/dlogits = p - onehot
		for k, d := range p {
			gB2[k] += d
		}
		for j, hj := range h {
			dh[j] = 0
			if hj <= 0 {
				continue
			}
			row := m.W2[j*Classes : (j+1)*Classes]
			grow := gW2[j*Classes : (j+1)*Classes]
			for k, d := range p {
				grow[k] += hj * d
				dh[j] += row[k] * d
			}
		}
		for j, d := range dh {
			gB1[j] += d
		}
		for i, xi := range x {
			if xi == 0 {
				continue
			}
			grow := gW1[i*m.Hidden : (i+1)*m.Hidden]
			for j, d := range dh {
				grow[j] += xi * d
			}
		}
	}
	inv := 1 / float64(len(batch))
	for _, g := range grads {
		for i := range g {
			g[i] *= inv
		}
	}
	return grads, loss * inv, correct
}

// Step applies one step of SGD with momentum on batch and returns the
// batch's mean loss (before the step) and its number of correct predictions.
func (m *MLP) Step(batch []Sample, lr, momentum float64) (loss float64, correct int) {
	grads, loss, correct := m.Gradients(batch)
	for i, p := range m.params() {
		v := m.vel[i]
		for j, g := range grads[i] {
			v[j] = momentum*v[j] - lr*g
			p[j] += v[j]
		}
	}
	return loss, correct
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Weights32 are the float32 weights written to the ONNX model.
type Weights32 struct {
	Hidden int
	W1, B1 []float32
	W2, B2 []float32
}

// Export rounds the weights to float32.
func (m *MLP) Export() Weights32 {
	f := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	return Weights32{Hidden: m.Hidden, W1: f(m.W1), B1: f(m.B1), W2: f(m.W2), B2: f(m.B2)}
}

// Predict classifies one sample the way the exported ONNX graph does, in
// float32: Mul by 1/16, Gemm, Relu, Gemm, Softmax, ArgMax (first maximum).
func (w Weights32) Predict(s *Sample) int {
	h := make([]float32, w.Hidden)
	copy(h, w.B1)
	for i, v := range s.Pixels {
		x := v * (1.0 / MaxPixel)
		row := w.W1[i*w.Hidden : (i+1)*w.Hidden]
		for j, wt := range row {
			h[j] += x * wt
		}
	}
	var z [Classes]float32
	copy(z[:], w.B2)
	for j, hj := range h {
		if hj < 0 {
			hj = 0
		}
		row := w.W2[j*Classes : (j+1)*Classes]
		for k, wt := range row {
			z[k] += hj * wt
		}
	}
	// Like the graph, take the first maximum of the float32 softmax.
	max := z[0]
	for _, v := range z[1:] {
		if v > max {
			max = v
		}
	}
	var p [Classes]float32
	var sum float32
	for k, v := range z {
		p[k] = float32(math.Exp(float64(v - max)))
		sum += p[k]
	}
	best := 0
	for k := range p {
		p[k] /= sum
		if p[k] > p[best] {
			best = k
		}
	}
	return best
}

// Accuracy is the fraction of samples Predict classifies correctly.
func (w Weights32) Accuracy(samples []Sample) float64 {
	if len(samples) == 0 {
		return 0
	}
	ok := 0
	for i := range samples {
		if w.Predict(&samples[i]) == samples[i].Label {
			ok++
		}
	}
	return float64(ok) / float64(len(samples))
}

// Params are the training hyperparameters.
type Params struct {
	LR        float64
	Momentum  float64
	Epochs    int
	Hidden    int
	BatchSize int
	Seed      int64
}

// EpochStats summarizes one epoch.
type EpochStats struct {
	Epoch      int     // 1-based
	Loss       float64 // mean training loss over the epoch's batches
	TrainAcc   float64 // accuracy on the training rows during the epoch
	HeldoutAcc float64 // accuracy of the float32 model on the held-out rows after the epoch
}

// Train trains an MLP on train, calling onEpoch after each epoch. It is
// deterministic for a given seed.
func Train(train, heldout []Sample, p Params, onEpoch func(EpochStats)) *MLP {
	rng := rand.New(rand.NewPCG(uint64(p.Seed), 0x61746c72)) // "atlr"
	m := NewMLP(p.Hidden, rng)
	data := append([]Sample(nil), train...)
	for e := 1; e <= p.Epochs; e++ {
		rng.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
		var lossSum float64
		correct := 0
		for i := 0; i < len(data); i += p.BatchSize {
			b := data[i:min(i+p.BatchSize, len(data))]
			l, c := m.Step(b, p.LR, p.Momentum)
			lossSum += l * float64(len(b))
			correct += c
		}
		if onEpoch != nil {
			onEpoch(EpochStats{
				Epoch:      e,
				Loss:       lossSum / float64(len(data)),
				TrainAcc:   float64(correct) / float64(len(data)),
				HeldoutAcc: m.Export().Accuracy(heldout),
			})
		}
	}
	return m
}
