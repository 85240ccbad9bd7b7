package isa

// Timing holds the parameters of the cycle model. docs/fpga.md states the
// model; the emulator charges exactly these cycles and the compiler uses
// the same function to estimate a program's device time.
type Timing struct {
	Rows, Cols       int // systolic array size
	DMABytesPerCycle int // DRAM bandwidth in bytes per cycle
	DMASetupCycles   int // fixed cost of every DMA descriptor
	VectorLanes      int // elements per cycle of the vector unit (BIAS, ACT, REQUANT, POOL)
	GatherBytes      int // bytes per cycle of the im2col gather unit
}

// DefaultTiming is the 32×32 array at 16 bytes per cycle of DRAM bandwidth
// (4 GB/s at 250 MHz).
func DefaultTiming() Timing {
	return Timing{Rows: 32, Cols: 32, DMABytesPerCycle: 16, DMASetupCycles: 64, VectorLanes: 32, GatherBytes: 32}
}

// vectorLatency is the pipeline depth of the vector unit.
const vectorLatency = 4

func ceilDiv(a, b uint64) uint64 {
	if b == 0 {
		return a
	}
	return (a + b - 1) / b
}

// Cycles returns the cycles an instruction takes:
//
//	NOP               1
//	LOAD, STORE       DMASetupCycles + ceil(bytes / DMABytesPerCycle)
//	MATMUL            K (weight preload) + M (rows streamed) + Rows + Cols (fill and drain)
//	BIAS, ACT         ceil(M·N / VectorLanes) + 4
//	REQUANT           ceil(M·N / VectorLanes) + 4
//	IM2COL            ceil(output bytes / GatherBytes) + 4
//	POOL              ceil(OH·OW·C·KH·KW / VectorLanes) + 4
func (t Timing) Cycles(in Instr) uint64 {
	switch in.Op {
	case OpLoad, OpStore:
		return uint64(t.DMASetupCycles) + ceilDiv(uint64(in.C)*uint64(in.D), uint64(t.DMABytesPerCycle))
	case OpMatMul:
		return uint64(in.E) + uint64(in.D) + uint64(t.Rows) + uint64(t.Cols)
	case OpBias, OpAct, OpRequant:
		return ceilDiv(uint64(in.D)*uint64(in.F), uint64(t.VectorLanes)) + vectorLatency
	case OpIm2Col:
		g, _ := ImageOf(in)
		return ceilDiv(uint64(g.OH*g.OW)*uint64(g.KH*g.KW*g.C), uint64(t.GatherBytes)) + vectorLatency
	case OpPool:
		g, _ := ImageOf(in)
		return ceilDiv(uint64(g.OH*g.OW)*uint64(g.C)*uint64(g.KH*g.KW), uint64(t.VectorLanes)) + vectorLatency
	}
	return 1
}
