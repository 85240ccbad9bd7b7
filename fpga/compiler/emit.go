package compiler

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// Plan is the host side of a compiled prefix: how to quantize the input
// into the device's layout and how to turn the device's output back into
// the cut tensor. It is stored with the program in an Artifact.
type Plan struct {
	Input      string  // graph input the device reads
	InputDims  []int64 // per-sample ONNX dims (without the batch)
	InputScale float64 // q = clamp(round(x' / InputScale), -128, 127); round half away from zero
	// InputMul and InputAdd, when set, transform each sample first:
	// x'[i] = x[i]·InputMul[i] + InputAdd[i] (per-sample ONNX order).
	InputMul, InputAdd []float64
	// InputImage is set when the input is C×H×W: the device takes HWC.
	InputImage bool

	Output     string  // the cut value the device produces
	OutputDims []int64 // per-sample ONNX dims
	// OutputInt32: the device writes int32 accumulators, real = q·OutputScales[channel]
	// (channel = last device dim); else int8 with real = q·OutputScales[0].
	OutputInt32  bool
	OutputScales []float64
	// OutputHWC holds C, H, W when the device bytes are in HWC order and
	// must be transposed to ONNX's CHW order.
	OutputHWC []int

	Batch     int    // samples per kernel iteration
	InBytes   int    // device input bytes per sample
	OutBytes  int    // device output bytes per sample
	EstCycles uint64 // modelled cycles per iteration
}

// quantizeWeights returns per-column int8 weights of a K×N matrix and the
// column scales (symmetric, real = q·scale).
func quantizeWeights(w []float64, K, N int) ([]int8, []float64) {
	scales := make([]float64, N)
	for j := 0; j < N; j++ {
		m := 0.0
		for k := 0; k < K; k++ {
			m = math.Max(m, math.Abs(w[k*N+j]))
		}
		scales[j] = m / 127
		if scales[j] == 0 {
			scales[j] = 1
		}
	}
	q := make([]int8, K*N)
	for k := 0; k < K; k++ {
		for j := 0; j < N; j++ {
			q[k*N+j] = int8(clampRound(w[k*N+j]/scales[j], -127, 127))
		}
	}
	return q, scales
}

func clampRound(v, lo, hi float64) float64 {
	return math.Min(math.Max(math.Round(v), lo), hi)
}

// multiplier returns (m, s) with m·2^-s ≈ M, m in [2^30, 2^31) where
// possible, s in [0, 62].
func multiplier(M float64) (int32, int32) {
	if M <= 0 || math.IsNaN(M) {
		return 0, 0
	}
	f, e := math.Frexp(M) // M = f·2^e, f in [0.5, 1)
	s := 31 - e
	m := math.Round(f * (1 << 31))
	if m >= 1<<31 {
		m /= 2
		s--
	}
	for s > 62 {
		m = math.Round(m / 2)
		s--
	}
	for s < 0 {
		return math.MaxInt32, 0
	}
	return int32(m), int32(s)
}

func scaleOf(maxabs float64) float64 {
	if maxabs == 0 || math.IsNaN(maxabs) || math.IsInf(maxabs, 0) {
		return 1
	}
	return maxabs / 127
}

// deviceWeights rearranges a layer's float weights into the K×N matrix the
// device multiplies by: rows in device input order.
func deviceWeights(l *layer) ([]float64, int, int) {
	switch l.kind {
	case kindDense:
		K, N := l.in.n, l.out.n
		if l.fromImage == nil {
			return l.w, K, N
		}
		im := *l.fromImage
		w := make([]float64, K*N)
		for c := 0; c < im.c; c++ {
			for y := 0; y < im.h; y++ {
				for x := 0; x < im.w; x++ {
					o := (c*im.h+y)*im.w + x
					d := (y*im.w+x)*im.c + c
					copy(w[d*N:d*N+N], l.w[o*N:o*N+N])
				}
			}
		}
		return w, K, N
	case kindConv:
		cin, cout := l.in.c, l.out.c
		K := l.kh * l.kw * cin
		w := make([]float64, K*cout)
		for o := 0; o < cout; o++ {
			for ci := 0; ci < cin; ci++ {
				for a := 0; a < l.kh; a++ {
					for b := 0; b < l.kw; b++ {
						w[((a*l.kw+b)*cin+ci)*cout+o] = l.w[((o*cin+ci)*l.kh+a)*l.kw+b]
					}
				}
			}
		}
		return w, K, cout
	}
	return nil, 0, 0
}

// emit builds the program for the first len(layers) layers. outMax[i] is
// the calibrated max |value| of layer i's output, inMax that of the scaled
// input. It fails (with a reason) when the layers do not fit on chip.
func emit(ch *chain, layers []*layer, info fpga.Info, batch int, inMax float64, outMax []float64) (*isa.Program, *Plan, error) {
	last := layers[len(layers)-1]
	int32Out := last.kind == kindDense || last.kind == kindConv
	plan := &Plan{
		Input: ch.input, InputDims: ch.inputShape.dims(), InputImage: ch.inputShape.image,
		Output: last.output, OutputDims: last.out.dims(), OutputInt32: int32Out, Batch: batch,
		InBytes: ch.inputShape.n,
	}
	sIn := scaleOf(inMax)
	plan.InputScale = sIn / ch.scale
	if ch.pre != nil {
		plan.InputScale = sIn
		plan.InputMul, plan.InputAdd = ch.pre.mul, ch.pre.add
	}

	// On-chip budget: two activation buffers, the patch matrix, and
	// weights. A layer whose K×N weights do not fit is processed in
	// column blocks that do (a multiple of the array width).
	act := ch.inputShape.n
	patchMax := 0
	for _, l := range layers {
		act = max(act, l.out.n)
		if l.kind == kindConv {
			patchMax = max(patchMax, l.out.h*l.out.w*l.kh*l.kw*l.in.c)
		}
	}
	actBytes := batch * act
	room := info.SPADBytes - 2*actBytes - patchMax
	wMax, nbMax := 0, 1
	block := make([]int, len(layers)) // column block width per layer
	for i, l := range layers {
		if l.kind != kindDense && l.kind != kindConv {
			continue
		}
		_, K, N := deviceWeights(l)
		nb := N
		if K*N > room {
			nb = max(room, 0) / K / info.Cols * info.Cols
		}
		if nb == 0 {
			return nil, nil, fmt.Errorf("needs %d scratchpad bytes for activations and patches plus %d for one %d-column weight block, device has %d",
				2*actBytes+patchMax, K*info.Cols, info.Cols, info.SPADBytes)
		}
		block[i] = nb
		wMax = max(wMax, K*nb)
		nbMax = max(nbMax, nb)
	}
	spad := 2*actBytes + patchMax + wMax
	if spad > info.SPADBytes {
		return nil, nil, fmt.Errorf("needs %d scratchpad bytes, device has %d", spad, info.SPADBytes)
	}
	paramBase := 0
	tileBase := 3 * nbMax
	if tileBase+nbMax > info.ACCWords {
		return nil, nil, fmt.Errorf("a %d-column block needs %d accumulator words, device has %d", nbMax, tileBase+nbMax, info.ACCWords)
	}
	act0, act1, wBase, patchBase := 0, actBytes, 2*actBytes, 2*actBytes+wMax

	p := &isa.Program{Rows: uint16(info.Rows), Cols: uint16(info.Cols), SPADBytes: uint32(max(spad, 1))}
	accUsed := 1
	var consts []byte
	addConst := func(b []byte) uint32 {
		for len(consts)%4 != 0 {
			consts = append(consts, 0)
		}
		off := len(consts)
		consts = append(consts, b...)
		return uint32(off)
	}
	ins := func(in isa.Instr) { p.Instrs = append(p.Instrs, in) }

	ins(isa.Instr{Op: isa.OpLoad, Reg: 1, A: 0, B: uint32(act0), C: 1, D: uint32(actBytes), E: uint32(actBytes), F: uint32(actBytes)})
	cur, other := act0, act1
	sX := sIn
	var hwc []int
	if ch.inputShape.image {
		hwc = []int{ch.inputShape.c, ch.inputShape.h, ch.inputShape.w}
	}
	for i, l := range layers {
		isLast := i == len(layers)-1
		switch l.kind {
		case kindFlatten:
			// Same bytes, now read as rows; the next dense layer's weights
			// are permuted to the HWC order.
		case kindMaxPool, kindAvgPool:
			var flags uint8
			if l.kind == kindAvgPool {
				flags = isa.FlagAvg
				if l.countPad {
					flags |= isa.FlagCountPad
				}
			}
			for s := 0; s < batch; s++ {
				ins(isa.Instr{Op: isa.OpPool, Flags: flags, A: uint32(cur + s*l.in.n), B: uint32(other + s*l.out.n),
					C: uint32(l.in.h), D: uint32(l.in.w), E: uint32(l.in.c), F: isa.Pack(l.kh, l.kw), G: isa.Pack(l.sh, l.sw),
					H: isa.Pack(l.pt, l.pl), I: uint32(l.out.h), J: uint32(l.out.w)})
			}
			cur, other = other, cur
			hwc = []int{l.out.c, l.out.h, l.out.w}
		case kindDense, kindConv:
			wf, K, N := deviceWeights(l)
			wq, ws := quantizeWeights(wf, K, N)
			wb := make([]byte, len(wq))
			for j, v := range wq {
				wb[j] = byte(v)
			}
			sY := scaleOf(outMax[i])
			params := make([]byte, 12*N)
			outScales := make([]float64, N)
			for j := 0; j < N; j++ {
				accScale := sX * ws[j]
				bq := clampRound(l.b[j]/accScale, math.MinInt32, math.MaxInt32)
				m, s := multiplier(accScale / sY)
				binary.LittleEndian.PutUint32(params[4*j:], uint32(int32(bq)))
				binary.LittleEndian.PutUint32(params[4*(N+j):], uint32(m))
				binary.LittleEndian.PutUint32(params[4*(2*N+j):], uint32(s))
				outScales[j] = accScale
			}
			// Constants per column block: the K×nb weight block, then
			// bias, multipliers and shifts of its nb channels.
			nb := block[i]
			for c0 := 0; c0 < N; c0 += nb {
				bw := min(nb, N-c0)
				wblk := make([]byte, 0, K*bw)
				for k := 0; k < K; k++ {
					wblk = append(wblk, wb[k*N+c0:k*N+c0+bw]...)
				}
				wOff := addConst(wblk)
				pblk := make([]byte, 0, 12*bw)
				for part := 0; part < 3; part++ {
					pblk = append(pblk, params[4*(part*N+c0):4*(part*N+c0+bw)]...)
				}
				pOff := addConst(pblk)
				ins(isa.Instr{Op: isa.OpLoad, Reg: 0, A: wOff, B: uint32(wBase), C: 1, D: uint32(K * bw), E: uint32(K * bw), F: uint32(K * bw)})
				ins(isa.Instr{Op: isa.OpLoad, Reg: 0, Flags: isa.FlagACC, A: pOff, B: uint32(paramBase), C: 1, D: uint32(12 * bw), E: uint32(12 * bw), F: uint32(3 * bw)})
				// A dense layer multiplies all samples' rows at once; a conv
				// layer runs once per sample on its patch matrix.
				samples, M := 1, batch
				if l.kind == kindConv {
					samples, M = batch, l.out.h*l.out.w
				}
				for s := 0; s < samples; s++ {
					aBase, outOff := cur, s*l.out.n+c0
					if l.kind == kindConv {
						ins(isa.Instr{Op: isa.OpIm2Col, A: uint32(cur + s*l.in.n), B: uint32(patchBase),
							C: uint32(l.in.h), D: uint32(l.in.w), E: uint32(l.in.c), F: isa.Pack(l.kh, l.kw), G: isa.Pack(l.sh, l.sw),
							H: isa.Pack(l.pt, l.pl), I: uint32(l.out.h), J: uint32(l.out.w), K: isa.Pack(l.dh, l.dw)})
						aBase = patchBase
					}
					chunk := max(1, min(M, (info.ACCWords-tileBase)/bw))
					for m0 := 0; m0 < M; m0 += chunk {
						mc := min(chunk, M-m0)
						accUsed = max(accUsed, tileBase+mc*bw)
						for n0 := 0; n0 < bw; n0 += info.Cols {
							nc := min(info.Cols, bw-n0)
							for k0 := 0; k0 < K; k0 += info.Rows {
								kc := min(info.Rows, K-k0)
								var f uint8
								if k0 > 0 {
									f = isa.FlagAccumulate
								}
								ins(isa.Instr{Op: isa.OpMatMul, Flags: f, A: uint32(aBase + m0*K + k0), B: uint32(wBase + k0*bw + n0), C: uint32(tileBase + n0),
									D: uint32(mc), E: uint32(kc), F: uint32(nc), G: uint32(K), H: uint32(bw), I: uint32(bw)})
							}
						}
						ins(isa.Instr{Op: isa.OpBias, A: uint32(tileBase), B: uint32(paramBase), D: uint32(mc), F: uint32(bw), I: uint32(bw)})
						if l.relu {
							ins(isa.Instr{Op: isa.OpAct, Flags: isa.ActReLU, A: uint32(tileBase), D: uint32(mc), F: uint32(bw), I: uint32(bw)})
						}
						if isLast {
							ins(isa.Instr{Op: isa.OpStore, Flags: isa.FlagACC, Reg: 2, A: uint32((outOff + m0*N) * 4), B: uint32(tileBase), C: uint32(mc), D: uint32(4 * bw), E: uint32(4 * N), F: uint32(bw)})
						} else {
							ins(isa.Instr{Op: isa.OpRequant, A: uint32(tileBase), B: uint32(other + outOff + m0*N), C: uint32(paramBase + bw), D: uint32(mc), F: uint32(bw), G: uint32(N), I: uint32(bw),
								J: uint32(0xffffff80), K: 127})
						}
					}
				}
			}
			if isLast {
				plan.OutputScales = outScales
				plan.OutBytes = 4 * l.out.n
			}
			cur, other = other, cur
			sX = sY
			hwc = nil
			if l.out.image {
				hwc = []int{l.out.c, l.out.h, l.out.w}
			}
		}
	}
	if !int32Out {
		plan.OutBytes = last.out.n
		plan.OutputScales = []float64{sX}
		ins(isa.Instr{Op: isa.OpStore, Reg: 2, A: 0, B: uint32(cur), C: 1, D: uint32(batch * last.out.n), E: uint32(batch * last.out.n), F: uint32(batch * last.out.n)})
	}
	plan.OutputHWC = hwc
	p.Consts = consts
	p.ACCWords = uint32(accUsed)
	p.InStride = uint32(batch * plan.InBytes)
	p.OutStride = uint32(batch * plan.OutBytes)
	if err := p.Validate(); err != nil {
		return nil, nil, fmt.Errorf("internal error: emitted program is invalid: %w", err)
	}
	t := timingOf(info)
	for _, in := range p.Instrs {
		plan.EstCycles += t.Cycles(in)
	}
	return p, plan, nil
}

func timingOf(info fpga.Info) isa.Timing {
	return isa.Timing{Rows: info.Rows, Cols: info.Cols, DMABytesPerCycle: info.DMABytesPerCycle, DMASetupCycles: info.DMASetupCycles, VectorLanes: info.VectorLanes, GatherBytes: info.GatherBytes}
}

// QuantizeInput converts float samples (ONNX layout) to the device's int8
// input bytes for plan p.
func (p *Plan) QuantizeInput(x []float32, dst []byte) {
	c, h, w := 1, 1, len(x)
	if p.InputImage {
		c, h, w = int(p.InputDims[0]), int(p.InputDims[1]), int(p.InputDims[2])
	}
	per := p.InBytes
	for s := 0; s < len(x)/per; s++ {
		src, out := x[s*per:(s+1)*per], dst[s*per:(s+1)*per]
		for i, v := range src {
			x := float64(v)
			if p.InputMul != nil {
				x = x*p.InputMul[i] + p.InputAdd[i]
			}
			q := int8(clampRound(x/p.InputScale, -128, 127))
			if p.InputImage {
				ch, rest := i/(h*w), i%(h*w)
				out[rest*c+ch] = byte(q)
			} else {
				out[i] = byte(q)
			}
		}
	}
}

// DequantizeOutput converts the device's output bytes for n samples to
// float32 in ONNX layout.
func (p *Plan) DequantizeOutput(b []byte, n int) []float32 {
	per := 1
	for _, d := range p.OutputDims {
		per *= int(d)
	}
	out := make([]float32, n*per)
	nch := len(p.OutputScales)
	for s := 0; s < n; s++ {
		for i := 0; i < per; i++ {
			var v float64
			if p.OutputInt32 {
				q := int32(binary.LittleEndian.Uint32(b[4*(s*per+i):]))
				v = float64(q) * p.OutputScales[i%nch] // device order: channel last
			} else {
				v = float64(int8(b[s*per+i])) * p.OutputScales[0]
			}
			j := i
			if p.OutputHWC != nil {
				c, h, w := p.OutputHWC[0], p.OutputHWC[1], p.OutputHWC[2]
				pix, ch := i/c, i%c
				j = ch*h*w + pix
			}
			out[s*per+j] = float32(v)
		}
	}
	return out
}
