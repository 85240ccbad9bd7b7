package isa

import (
	"fmt"
	"strings"
)

// Disassemble renders the program as text: the header, then one line per
// instruction with named operands. The format is for people and golden
// tests, not for parsing.
func (p *Program) Disassemble() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; array %dx%d, spad %d bytes, acc %d words, %d instructions, %d constant bytes, strides in %d out %d\n",
		p.Rows, p.Cols, p.SPADBytes, p.ACCWords, len(p.Instrs), len(p.Consts), p.InStride, p.OutStride)
	for i, in := range p.Instrs {
		fmt.Fprintf(&b, "%4d  %s\n", i, in.Text())
	}
	return b.String()
}

// Text renders one instruction with named operands.
func (in Instr) Text() string {
	img := func() string {
		kh, kw := Unpack(in.F)
		sh, sw := Unpack(in.G)
		pt, pl := Unpack(in.H)
		s := fmt.Sprintf("src=%d dst=%d in=%dx%dx%d k=%dx%d s=%dx%d pad=%d,%d out=%dx%d", in.A, in.B, in.C, in.D, in.E, kh, kw, sh, sw, pt, pl, in.I, in.J)
		if in.Op == OpIm2Col {
			dh, dw := Unpack(in.K)
			s += fmt.Sprintf(" dil=%dx%d", dh, dw)
		}
		return s
	}
	switch in.Op {
	case OpNop:
		return "NOP"
	case OpLoad, OpStore:
		mem := "spad"
		if in.Flags&FlagACC != 0 {
			mem = "acc"
		}
		if in.Op == OpLoad {
			return fmt.Sprintf("LOAD    %s[%d] <- r%d+%d  rows=%d bytes=%d dram_stride=%d stride=%d", mem, in.B, in.Reg, in.A, in.C, in.D, in.E, in.F)
		}
		return fmt.Sprintf("STORE   r%d+%d <- %s[%d]  rows=%d bytes=%d dram_stride=%d stride=%d", in.Reg, in.A, mem, in.B, in.C, in.D, in.E, in.F)
	case OpMatMul:
		op := "="
		if in.Flags&FlagAccumulate != 0 {
			op = "+="
		}
		return fmt.Sprintf("MATMUL  acc[%d] %s spad[%d]·spad[%d]  m=%d k=%d n=%d lda=%d ldb=%d ldc=%d", in.C, op, in.A, in.B, in.D, in.E, in.F, in.G, in.H, in.I)
	case OpBias:
		return fmt.Sprintf("BIAS    acc[%d] += acc[%d]  m=%d n=%d ldc=%d", in.A, in.B, in.D, in.F, in.I)
	case OpAct:
		return fmt.Sprintf("RELU    acc[%d]  m=%d n=%d ldc=%d", in.A, in.D, in.F, in.I)
	case OpRequant:
		return fmt.Sprintf("REQUANT spad[%d] <- acc[%d]  params=acc[%d] m=%d n=%d ldd=%d ldc=%d clamp=[%d,%d]", in.B, in.A, in.C, in.D, in.F, in.G, in.I, int32(in.J), int32(in.K))
	case OpIm2Col:
		return "IM2COL  " + img()
	case OpPool:
		kind := "max"
		if in.Flags&FlagAvg != 0 {
			kind = "avg"
			if in.Flags&FlagCountPad != 0 {
				kind = "avg_count_pad"
			}
		}
		return fmt.Sprintf("POOL    %s %s", kind, img())
	}
	return in.String()
}
