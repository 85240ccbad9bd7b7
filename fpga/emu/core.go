package emu

import (
	"fmt"

	"github.com/atelier-ml/atelier/fpga/isa"
)

// Memory is the DRAM a Core's DMA instructions reach. Implementations
// return an error for an address range that is not mapped.
type Memory interface {
	ReadAt(addr uint64, p []byte) error
	WriteAt(addr uint64, p []byte) error
}

// Core is the compute part of the device: the systolic array, the
// scratchpad, the accumulator memory and the DMA engine. It executes
// programs bit-exactly and deterministically and counts cycles with the
// model of isa.Timing.Cycles. A Core is not safe for concurrent use.
type Core struct {
	timing isa.Timing
	spad   []byte
	acc    []int32
	row    []byte  // DMA staging buffer
	sum    []int32 // one row of partial sums
}

// NewCore returns a core with the given on-chip sizes.
func NewCore(t isa.Timing, spadBytes, accWords int) *Core {
	return &Core{timing: t, spad: make([]byte, spadBytes), acc: make([]int32, accWords), sum: make([]int32, t.Cols)}
}

// ExecError is a fault raised while executing a program: which iteration
// and instruction, and why.
type ExecError struct {
	Iteration int
	Index     int
	Instr     isa.Instr
	Err       error
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("iteration %d instruction %d (%s): %v", e.Iteration, e.Index, e.Instr.Op, e.Err)
}

func (e *ExecError) Unwrap() error { return e.Err }

// Run executes p iterations times. regs are the DRAM base registers; R1 and
// R2 advance by p.InStride and p.OutStride after each iteration. It returns
// the cycles used (also when it fails part-way). On-chip memory is not
// cleared between iterations or runs, as on the hardware: programs must
// write before they read.
func (c *Core) Run(p *isa.Program, mem Memory, regs [isa.NumRegs]uint64, iterations int) (uint64, error) {
	if int(p.Rows) != c.timing.Rows || int(p.Cols) != c.timing.Cols {
		return 0, fmt.Errorf("program for a %dx%d array on a %dx%d device: %w", p.Rows, p.Cols, c.timing.Rows, c.timing.Cols, ErrIncompatible)
	}
	if int(p.SPADBytes) > len(c.spad) || int(p.ACCWords) > len(c.acc) {
		return 0, fmt.Errorf("program needs %d scratchpad bytes and %d accumulator words, device has %d and %d: %w", p.SPADBytes, p.ACCWords, len(c.spad), len(c.acc), ErrIncompatible)
	}
	var cycles uint64
	for it := 0; it < iterations; it++ {
		for i, in := range p.Instrs {
			cycles += c.timing.Cycles(in)
			if err := c.exec(in, mem, &regs); err != nil {
				return cycles, &ExecError{Iteration: it, Index: i, Instr: in, Err: err}
			}
		}
		regs[1] += uint64(p.InStride)
		regs[2] += uint64(p.OutStride)
	}
	return cycles, nil
}

// Exec executes one instruction (for tests and single-stepping). The
// instruction must have passed isa validation against this core's sizes.
func (c *Core) Exec(in isa.Instr, mem Memory, regs [isa.NumRegs]uint64) (uint64, error) {
	return c.timing.Cycles(in), c.exec(in, mem, &regs)
}

// SPAD and ACC expose the on-chip memories (for tests).
func (c *Core) SPAD() []byte { return c.spad }
func (c *Core) ACC() []int32 { return c.acc }

func (c *Core) exec(in isa.Instr, mem Memory, regs *[isa.NumRegs]uint64) error {
	switch in.Op {
	case isa.OpNop:
		return nil
	case isa.OpLoad, isa.OpStore:
		return c.dma(in, mem, regs[in.Reg])
	case isa.OpMatMul:
		c.matmul(in)
	case isa.OpBias:
		m, n := int(in.D), int(in.F)
		for r := 0; r < m; r++ {
			row := c.acc[int(in.A)+r*int(in.I):][:n]
			bias := c.acc[int(in.B):][:n]
			for j := range row {
				row[j] += bias[j]
			}
		}
	case isa.OpAct:
		m, n := int(in.D), int(in.F)
		for r := 0; r < m; r++ {
			row := c.acc[int(in.A)+r*int(in.I):][:n]
			for j, v := range row {
				if v < 0 {
					row[j] = 0
				}
			}
		}
	case isa.OpRequant:
		return c.requant(in)
	case isa.OpIm2Col:
		c.im2col(in)
	case isa.OpPool:
		c.pool(in)
	default:
		return fmt.Errorf("opcode %d: %w", in.Op, ErrIllegal)
	}
	return nil
}

func (c *Core) dma(in isa.Instr, mem Memory, base uint64) error {
	rows, width := int(in.C), int(in.D)
	if cap(c.row) < width {
		c.row = make([]byte, width)
	}
	buf := c.row[:width]
	for r := 0; r < rows; r++ {
		addr := base + uint64(in.A) + uint64(r)*uint64(in.E)
		if in.Flags&isa.FlagACC != 0 {
			words := c.acc[int(in.B)+r*int(in.F):][:width/4]
			if in.Op == isa.OpLoad {
				if err := mem.ReadAt(addr, buf); err != nil {
					return err
				}
				for j := range words {
					words[j] = int32(uint32(buf[4*j]) | uint32(buf[4*j+1])<<8 | uint32(buf[4*j+2])<<16 | uint32(buf[4*j+3])<<24)
				}
			} else {
				for j, w := range words {
					buf[4*j], buf[4*j+1], buf[4*j+2], buf[4*j+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
				}
				if err := mem.WriteAt(addr, buf); err != nil {
					return err
				}
			}
			continue
		}
		s := c.spad[int(in.B)+r*int(in.F):][:width]
		var err error
		if in.Op == isa.OpLoad {
			err = mem.ReadAt(addr, s)
		} else {
			err = mem.WriteAt(addr, s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Core) matmul(in isa.Instr) {
	m, k, n := int(in.D), int(in.E), int(in.F)
	lda, ldb, ldc := int(in.G), int(in.H), int(in.I)
	acc := in.Flags&isa.FlagAccumulate != 0
	for r := 0; r < m; r++ {
		s := c.sum[:n]
		if acc {
			copy(s, c.acc[int(in.C)+r*ldc:][:n])
		} else {
			clear(s)
		}
		a := c.spad[int(in.A)+r*lda:][:k]
		for kk, av := range a {
			if av == 0 {
				continue
			}
			x := int32(int8(av))
			b := c.spad[int(in.B)+kk*ldb:][:n]
			for j, bv := range b {
				s[j] += x * int32(int8(bv))
			}
		}
		copy(c.acc[int(in.C)+r*ldc:][:n], s)
	}
}

func (c *Core) requant(in isa.Instr) error {
	m, n := int(in.D), int(in.F)
	params := c.acc[int(in.C):][:2*n]
	mult, shift := params[:n], params[n:]
	for j, s := range shift {
		if s < 0 || s > 62 {
			return fmt.Errorf("channel %d: shift %d, want 0..62: %w", j, s, ErrIllegal)
		}
	}
	lo, hi := int64(int32(in.J)), int64(int32(in.K))
	for r := 0; r < m; r++ {
		src := c.acc[int(in.A)+r*int(in.I):][:n]
		dst := c.spad[int(in.B)+r*int(in.G):][:n]
		for j, v := range src {
			q := RoundShift(int64(v)*int64(mult[j]), uint(shift[j]))
			q = min(max(q, lo), hi)
			dst[j] = byte(int8(q))
		}
	}
	return nil
}

// RoundShift returns v / 2^s rounded to the nearest integer, ties away
// from zero. |v| must be below 2^62.
func RoundShift(v int64, s uint) int64 {
	if s == 0 {
		return v
	}
	half := int64(1) << (s - 1)
	if v >= 0 {
		return (v + half) >> s
	}
	return -((-v + half) >> s)
}

// RoundDiv returns num/den rounded to the nearest integer, ties away from
// zero; den > 0.
func RoundDiv(num, den int64) int64 {
	if num >= 0 {
		return (2*num + den) / (2 * den)
	}
	return -((-2*num + den) / (2 * den))
}

func (c *Core) im2col(in isa.Instr) {
	g, _ := isa.ImageOf(in)
	src := c.spad[in.A:]
	rowW := g.KH * g.KW * g.C
	dst := c.spad[int(in.B):][:g.OH*g.OW*rowW]
	i := 0
	for oh := 0; oh < g.OH; oh++ {
		for ow := 0; ow < g.OW; ow++ {
			for kh := 0; kh < g.KH; kh++ {
				ih := oh*g.SH - g.PT + kh*g.DH
				for kw := 0; kw < g.KW; kw++ {
					iw := ow*g.SW - g.PL + kw*g.DW
					out := dst[i : i+g.C]
					if ih < 0 || ih >= g.H || iw < 0 || iw >= g.W {
						clear(out)
					} else {
						copy(out, src[(ih*g.W+iw)*g.C:][:g.C])
					}
					i += g.C
				}
			}
		}
	}
}

func (c *Core) pool(in isa.Instr) {
	g, _ := isa.ImageOf(in)
	avg := in.Flags&isa.FlagAvg != 0
	countPad := in.Flags&isa.FlagCountPad != 0
	src := c.spad[in.A:]
	// Compute into a temporary first: input and output may overlap.
	out := make([]byte, g.OH*g.OW*g.C)
	for oh := 0; oh < g.OH; oh++ {
		for ow := 0; ow < g.OW; ow++ {
			for ch := 0; ch < g.C; ch++ {
				best, sum, cnt := int64(-129), int64(0), int64(0)
				for kh := 0; kh < g.KH; kh++ {
					ih := oh*g.SH - g.PT + kh
					for kw := 0; kw < g.KW; kw++ {
						iw := ow*g.SW - g.PL + kw
						if ih < 0 || ih >= g.H || iw < 0 || iw >= g.W {
							continue
						}
						v := int64(int8(src[(ih*g.W+iw)*g.C+ch]))
						best = max(best, v)
						sum += v
						cnt++
					}
				}
				var q int64
				switch {
				case cnt == 0:
					q = 0
				case avg && countPad:
					q = RoundDiv(sum, int64(g.KH*g.KW))
				case avg:
					q = RoundDiv(sum, cnt)
				default:
					q = best
				}
				out[(oh*g.OW+ow)*g.C+ch] = byte(int8(q))
			}
		}
	}
	copy(c.spad[in.B:], out)
}
