package emu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/atelier-ml/atelier/fpga/isa"
)

// flat is a DRAM of one allocation at address 0.
type flat []byte

func (m flat) ReadAt(addr uint64, p []byte) error {
	if addr+uint64(len(p)) > uint64(len(m)) {
		return fmt.Errorf("read [%d,+%d): %w", addr, len(p), ErrBadAddress)
	}
	copy(p, m[addr:])
	return nil
}

func (m flat) WriteAt(addr uint64, p []byte) error {
	if addr+uint64(len(p)) > uint64(len(m)) {
		return fmt.Errorf("write [%d,+%d): %w", addr, len(p), ErrBadAddress)
	}
	copy(m[addr:], p)
	return nil
}

func newCore() *Core { return NewCore(isa.DefaultTiming(), 1<<16, 1<<14) }

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

func exec(t *testing.T, c *Core, mem Memory, regs [isa.NumRegs]uint64, in isa.Instr) {
	t.Helper()
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: uint32(len(c.spad)), ACCWords: uint32(len(c.acc)), Instrs: []isa.Instr{in}}
	if err := p.Validate(); err != nil {
		t.Fatalf("invalid test instruction %v: %v", in, err)
	}
	if _, err := c.Exec(in, mem, regs); err != nil {
		t.Fatalf("%v: %v", in, err)
	}
}

func TestLoadStore(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := newCore()
	mem := flat(randBytes(r, 4096))
	regs := [isa.NumRegs]uint64{0, 100}
	// 3 rows of 10 bytes, DRAM stride 17, SPAD stride 12.
	exec(t, c, mem, regs, isa.Instr{Op: isa.OpLoad, Reg: 1, A: 5, B: 40, C: 3, D: 10, E: 17, F: 12})
	for row := 0; row < 3; row++ {
		for j := 0; j < 10; j++ {
			if got, want := c.spad[40+row*12+j], mem[100+5+row*17+j]; got != want {
				t.Fatalf("spad row %d byte %d = %d, want %d", row, j, got, want)
			}
		}
	}
	exec(t, c, mem, regs, isa.Instr{Op: isa.OpStore, Reg: 0, A: 2000, B: 40, C: 3, D: 10, E: 10, F: 12})
	for row := 0; row < 3; row++ {
		for j := 0; j < 10; j++ {
			if mem[2000+row*10+j] != mem[100+5+row*17+j] {
				t.Fatalf("stored row %d byte %d differs", row, j)
			}
		}
	}
	// Accumulator words, little-endian.
	exec(t, c, mem, regs, isa.Instr{Op: isa.OpLoad, Flags: isa.FlagACC, A: 0, B: 7, C: 2, D: 8, E: 8, F: 5})
	for row := 0; row < 2; row++ {
		for j := 0; j < 2; j++ {
			o := row*8 + 4*j
			want := int32(uint32(mem[o]) | uint32(mem[o+1])<<8 | uint32(mem[o+2])<<16 | uint32(mem[o+3])<<24)
			if got := c.acc[7+row*5+j]; got != want {
				t.Fatalf("acc row %d word %d = %d, want %d", row, j, got, want)
			}
		}
	}
	exec(t, c, mem, regs, isa.Instr{Op: isa.OpStore, Flags: isa.FlagACC, A: 3000, B: 7, C: 2, D: 8, E: 8, F: 5})
	for i := 0; i < 16; i++ {
		if mem[3000+i] != mem[i] {
			t.Fatalf("acc store byte %d = %d, want %d", i, mem[3000+i], mem[i])
		}
	}
	// A DMA outside DRAM faults.
	if _, err := c.Exec(isa.Instr{Op: isa.OpLoad, A: 4090, B: 0, C: 1, D: 10, E: 10, F: 10}, mem, regs); err == nil {
		t.Fatal("DMA past the end of DRAM succeeded")
	}
}

func TestMatMulBiasActAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 30; trial++ {
		c := newCore()
		m, k, n := 1+r.IntN(40), 1+r.IntN(32), 1+r.IntN(32)
		lda, ldb, ldc := k+r.IntN(3), n+r.IntN(3), n+r.IntN(3)
		copy(c.spad, randBytes(r, 8192))
		for i := range c.acc[:4096] {
			c.acc[i] = int32(r.Uint32())
		}
		accumulate := r.IntN(2) == 1
		before := append([]int32(nil), c.acc[:4096]...)
		in := isa.Instr{Op: isa.OpMatMul, A: 10, B: 3000, C: 100, D: uint32(m), E: uint32(k), F: uint32(n), G: uint32(lda), H: uint32(ldb), I: uint32(ldc)}
		if accumulate {
			in.Flags = isa.FlagAccumulate
		}
		exec(t, c, nil, [isa.NumRegs]uint64{}, in)
		exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpBias, A: 100, B: 3500, D: uint32(m), F: uint32(n), I: uint32(ldc)})
		exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpAct, Flags: isa.ActReLU, A: 100, D: uint32(m), F: uint32(n), I: uint32(ldc)})
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s int64
				if accumulate {
					s = int64(before[100+i*ldc+j])
				}
				for kk := 0; kk < k; kk++ {
					s += int64(int8(c.spad[10+i*lda+kk])) * int64(int8(c.spad[3000+kk*ldb+j]))
				}
				s = int64(int32(s)) + int64(before[3500+j])
				want := int32(s) // two's complement wrap, as documented
				want = max(want, 0)
				if got := c.acc[100+i*ldc+j]; got != want {
					t.Fatalf("trial %d (m=%d k=%d n=%d acc=%v): [%d,%d] = %d, want %d", trial, m, k, n, accumulate, i, j, got, want)
				}
			}
		}
		// Words outside the tile are untouched.
		for i := 0; i < 100; i++ {
			if c.acc[i] != before[i] {
				t.Fatalf("acc[%d] changed", i)
			}
		}
	}
}

func TestRoundingHelpers(t *testing.T) {
	cases := []struct {
		v    int64
		s    uint
		want int64
	}{{5, 1, 3}, {-5, 1, -3}, {4, 1, 2}, {7, 2, 2}, {6, 2, 2}, {-6, 2, -2}, {-7, 2, -2}, {10, 2, 3}, {-10, 2, -3}, {9, 0, 9}}
	for _, c := range cases {
		if got := RoundShift(c.v, c.s); got != c.want {
			t.Errorf("RoundShift(%d, %d) = %d, want %d", c.v, c.s, got, c.want)
		}
	}
	divs := []struct{ n, d, want int64 }{{5, 2, 3}, {-5, 2, -3}, {4, 3, 1}, {5, 3, 2}, {-5, 3, -2}, {-4, 3, -1}, {0, 4, 0}}
	for _, c := range divs {
		if got := RoundDiv(c.n, c.d); got != c.want {
			t.Errorf("RoundDiv(%d, %d) = %d, want %d", c.n, c.d, got, c.want)
		}
	}
}

func TestRequantAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	c := newCore()
	m, n := 7, 19
	for i := 0; i < m*n; i++ {
		c.acc[i] = int32(r.IntN(1<<20)) - 1<<19
	}
	for j := 0; j < n; j++ {
		c.acc[1000+j] = int32(1<<30 + r.IntN(1<<30)) // multiplier
		c.acc[1000+n+j] = int32(31 + r.IntN(12))     // shift
	}
	lo, hi := int32(-100), int32(90)
	exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpRequant, A: 0, B: 500, C: 1000, D: uint32(m), F: uint32(n), G: uint32(n + 2), I: uint32(n), J: uint32(lo), K: uint32(hi)})
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			x := float64(c.acc[i*n+j]) * float64(c.acc[1000+j]) / math.Ldexp(1, int(c.acc[1000+n+j]))
			want := math.Round(x) // half away from zero; exact: |product| < 2^51
			want = math.Min(math.Max(want, float64(lo)), float64(hi))
			if got := int8(c.spad[500+i*(n+2)+j]); float64(got) != want {
				t.Fatalf("[%d,%d]: %d, want %v (x=%v)", i, j, got, want, x)
			}
		}
	}
	c.acc[1000+n] = 63
	if _, err := c.Exec(isa.Instr{Op: isa.OpRequant, A: 0, B: 500, C: 1000, D: 1, F: uint32(n), G: uint32(n), I: uint32(n), J: uint32(lo), K: uint32(hi)}, nil, [isa.NumRegs]uint64{}); err == nil {
		t.Fatal("shift 63 accepted")
	}
}

// refConv is a direct 2-D convolution over an HWC int8 image with OIHW-like
// weights w[o][kh][kw][c].
func refConv(img []int8, h, w, ch int, wt []int8, cout, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow int) []int32 {
	out := make([]int32, oh*ow*cout)
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			for o := 0; o < cout; o++ {
				var s int32
				for a := 0; a < kh; a++ {
					for b := 0; b < kw; b++ {
						iy, ix := y*sh-pt+a*dh, x*sw-pl+b*dw
						if iy < 0 || iy >= h || ix < 0 || ix >= w {
							continue
						}
						for cc := 0; cc < ch; cc++ {
							s += int32(img[(iy*w+ix)*ch+cc]) * int32(wt[((o*kh+a)*kw+b)*ch+cc])
						}
					}
				}
				out[(y*ow+x)*cout+o] = s
			}
		}
	}
	return out
}

func TestIm2ColMatMulIsConvolution(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 20; trial++ {
		h, w, ch := 3+r.IntN(6), 3+r.IntN(6), 1+r.IntN(3)
		kh, kw := 1+r.IntN(3), 1+r.IntN(3)
		sh, sw, dh, dw := 1+r.IntN(2), 1+r.IntN(2), 1+r.IntN(2), 1+r.IntN(2)
		pt, pl := r.IntN(dh*(kh-1)+1), r.IntN(dw*(kw-1)+1)
		oh := (h+2*pt-dh*(kh-1)-1)/sh + 1
		ow := (w+2*pl-dw*(kw-1)-1)/sw + 1
		if oh < 1 || ow < 1 {
			continue
		}
		cout := 1 + r.IntN(8)
		k := kh * kw * ch
		if k > 32 {
			continue
		}
		c := newCore()
		img := make([]int8, h*w*ch)
		for i := range img {
			img[i] = int8(r.IntN(256) - 128)
			c.spad[i] = byte(img[i])
		}
		wt := make([]int8, cout*k)
		for i := range wt {
			wt[i] = int8(r.IntN(256) - 128)
		}
		// Weights as the K×N matrix B: row (kh,kw,c), column o.
		for o := 0; o < cout; o++ {
			for i := 0; i < k; i++ {
				c.spad[20000+i*cout+o] = byte(wt[o*k+i])
			}
		}
		exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpIm2Col, A: 0, B: 1000, C: uint32(h), D: uint32(w), E: uint32(ch),
			F: isa.Pack(kh, kw), G: isa.Pack(sh, sw), H: isa.Pack(pt, pl), I: uint32(oh), J: uint32(ow), K: isa.Pack(dh, dw)})
		exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpMatMul, A: 1000, B: 20000, C: 0, D: uint32(oh * ow), E: uint32(k), F: uint32(cout), G: uint32(k), H: uint32(cout), I: uint32(cout)})
		want := refConv(img, h, w, ch, wt, cout, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
		for i, v := range want {
			if c.acc[i] != v {
				t.Fatalf("trial %d: output %d = %d, want %d", trial, i, c.acc[i], v)
			}
		}
	}
}

func TestPoolAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for trial := 0; trial < 40; trial++ {
		h, w, ch := 2+r.IntN(6), 2+r.IntN(6), 1+r.IntN(3)
		kh, kw := 1+r.IntN(3), 1+r.IntN(3)
		sh, sw := 1+r.IntN(2), 1+r.IntN(2)
		pt, pl := r.IntN(kh), r.IntN(kw)
		oh, ow := (h+2*pt-kh)/sh+1, (w+2*pl-kw)/sw+1
		if oh < 1 || ow < 1 {
			continue
		}
		flags := uint8(r.IntN(4))
		c := newCore()
		copy(c.spad, randBytes(r, h*w*ch))
		img := append([]byte(nil), c.spad[:h*w*ch]...)
		exec(t, c, nil, [isa.NumRegs]uint64{}, isa.Instr{Op: isa.OpPool, Flags: flags, A: 0, B: 0, C: uint32(h), D: uint32(w), E: uint32(ch),
			F: isa.Pack(kh, kw), G: isa.Pack(sh, sw), H: isa.Pack(pt, pl), I: uint32(oh), J: uint32(ow)})
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				for cc := 0; cc < ch; cc++ {
					mx, sum, n := -1000, 0, 0
					for a := 0; a < kh; a++ {
						for b := 0; b < kw; b++ {
							iy, ix := y*sh-pt+a, x*sw-pl+b
							if iy < 0 || iy >= h || ix < 0 || ix >= w {
								continue
							}
							v := int(int8(img[(iy*w+ix)*ch+cc]))
							mx = max(mx, v)
							sum += v
							n++
						}
					}
					var want float64
					switch {
					case flags&isa.FlagAvg == 0:
						want = float64(mx)
					case flags&isa.FlagCountPad != 0:
						want = math.Round(float64(sum) / float64(kh*kw))
					default:
						want = math.Round(float64(sum) / float64(n))
					}
					if got := int8(c.spad[(y*ow+x)*ch+cc]); float64(got) != want {
						t.Fatalf("trial %d flags %d: [%d,%d,%d] = %d, want %v", trial, flags, y, x, cc, got, want)
					}
				}
			}
		}
	}
}

func TestRunIteratesAndCountsCycles(t *testing.T) {
	// Copy 3 chunks of 8 bytes from R1 to R2, adding nothing: LOAD + STORE per iteration.
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: 8, ACCWords: 1, InStride: 8, OutStride: 8, Instrs: []isa.Instr{
		{Op: isa.OpLoad, Reg: 1, B: 0, C: 1, D: 8, E: 8, F: 8},
		{Op: isa.OpStore, Reg: 2, B: 0, C: 1, D: 8, E: 8, F: 8},
	}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	mem := flat(make([]byte, 64))
	for i := 0; i < 24; i++ {
		mem[i] = byte(i + 1)
	}
	c := newCore()
	cycles, err := c.Run(p, mem, [isa.NumRegs]uint64{0, 0, 32}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 24; i++ {
		if mem[32+i] != byte(i+1) {
			t.Fatalf("out[%d] = %d", i, mem[32+i])
		}
	}
	if want := uint64(3 * 2 * (64 + 1)); cycles != want {
		t.Fatalf("%d cycles, want %d", cycles, want)
	}
	bad := *p
	bad.Rows = 16
	if _, err := c.Run(&bad, mem, [isa.NumRegs]uint64{}, 1); err == nil {
		t.Fatal("program for another array ran")
	}
}
