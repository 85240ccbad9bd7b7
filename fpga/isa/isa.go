package isa

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Version is the program format version this package reads and writes.
const Version = 1

// Magic starts every program image.
const Magic = "AFPG"

// HeaderSize is the size of the fixed program header in bytes; InstrSize
// the size of one encoded instruction.
const (
	HeaderSize = 36
	InstrSize  = 48
)

// Limits Decode enforces before allocating.
const (
	MaxInstrs     = 1 << 20
	MaxConstBytes = 1 << 30
)

// NumRegs is the number of DRAM base registers. R0 holds the base address
// of the program's constant segment (set by the device when the program is
// loaded); R1 is the input, R2 the output, R3..R7 further kernel
// arguments. R1 and R2 advance by the header's InStride and OutStride on
// every iteration of a kernel run.
const NumRegs = 8

// Opcode selects an instruction.
type Opcode uint8

// The instructions. Operand letters refer to Instr fields A..K; docs/fpga.md
// has the full table.
const (
	OpNop     Opcode = 0 // no operands; 1 cycle
	OpLoad    Opcode = 1 // DMA DRAM[Reg+A] → SPAD[B] (or ACC[B] words with FlagACC): C rows of D bytes, DRAM stride E, on-chip stride F
	OpStore   Opcode = 2 // DMA SPAD[B] (or ACC[B] with FlagACC) → DRAM[Reg+A]: same operands as OpLoad
	OpMatMul  Opcode = 3 // ACC[C] (M=D × N=F, stride I) (+)= SPAD[A] (M×K=E, stride G) · SPAD[B] (K×N, stride H); K ≤ Rows, N ≤ Cols
	OpBias    Opcode = 4 // ACC[A] (M=D × N=F, stride I) += ACC[B] (N words), broadcast over rows
	OpAct     Opcode = 5 // ACC[A] (M=D × N=F, stride I) = act(ACC); Flags selects act (ActReLU)
	OpRequant Opcode = 6 // SPAD[B] (M=D × N=F, stride G) = clamp(round(ACC[A]·mult[n] / 2^shift[n]), J, K); mult at ACC[C], shifts at ACC[C+N]
	OpIm2Col  Opcode = 7 // SPAD[B] patches (OH·OW rows × KH·KW·C) from SPAD[A] HWC image; see Conv fields
	OpPool    Opcode = 8 // SPAD[B] (OH×OW×C) = max or avg pool of SPAD[A] (H×W×C); FlagAvg, FlagCountPad
	numOps    Opcode = 9
)

var opNames = [...]string{"NOP", "LOAD", "STORE", "MATMUL", "BIAS", "ACT", "REQUANT", "IM2COL", "POOL"}

// String returns the mnemonic.
func (o Opcode) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("OP(%d)", uint8(o))
}

// Instruction flags.
const (
	FlagACC        uint8 = 1 << 0 // OpLoad/OpStore: the on-chip side is ACC (int32 words, little-endian in DRAM)
	FlagAccumulate uint8 = 1 << 0 // OpMatMul: add to ACC instead of overwriting it
	FlagAvg        uint8 = 1 << 0 // OpPool: average (else max)
	FlagCountPad   uint8 = 1 << 1 // OpPool average: divide by KH·KW including padding
	ActReLU        uint8 = 1      // OpAct: max(x, 0)
)

// Instr is one decoded instruction. The meaning of A..K depends on Op.
// Image operands (OpIm2Col, OpPool) pack two 16-bit values into one field
// with Pack: F = KH|KW<<16, G = strideH|strideW<<16, H = padTop|padLeft<<16,
// K = dilationH|dilationW<<16 (OpIm2Col only); C, D, E are the input H, W,
// channels and I, J the output OH, OW.
type Instr struct {
	Op                              Opcode
	Flags                           uint8
	Reg                             uint8
	A, B, C, D, E, F, G, H, I, J, K uint32
}

// Pack puts lo in the low and hi in the high 16 bits.
func Pack(lo, hi int) uint32 { return uint32(lo)&0xffff | uint32(hi)<<16 }

// Unpack splits a packed field.
func Unpack(v uint32) (lo, hi int) { return int(v & 0xffff), int(v >> 16) }

func (in Instr) fields() [11]uint32 {
	return [11]uint32{in.A, in.B, in.C, in.D, in.E, in.F, in.G, in.H, in.I, in.J, in.K}
}

// String renders the instruction in assembler-like form.
func (in Instr) String() string {
	f := in.fields()
	return fmt.Sprintf("%s f=%d r%d %v", in.Op, in.Flags, in.Reg, f)
}

// Program is a decoded program image.
type Program struct {
	Rows, Cols uint16 // systolic array size the program was compiled for
	SPADBytes  uint32 // scratchpad bytes the program uses (all on-chip accesses are below)
	ACCWords   uint32 // accumulator words the program uses
	InStride   uint32 // bytes R1 advances per kernel iteration
	OutStride  uint32 // bytes R2 advances per kernel iteration
	Instrs     []Instr
	Consts     []byte // constant segment, placed in DRAM at R0 when the program is loaded
}

// Encode serializes p. It validates p first (see Validate).
func (p *Program) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	b := make([]byte, 0, HeaderSize+InstrSize*len(p.Instrs)+len(p.Consts)+4)
	b = append(b, Magic...)
	b = le.AppendUint16(b, Version)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, p.Rows)
	b = le.AppendUint16(b, p.Cols)
	b = le.AppendUint32(b, p.SPADBytes)
	b = le.AppendUint32(b, p.ACCWords)
	b = le.AppendUint32(b, uint32(len(p.Instrs)))
	b = le.AppendUint32(b, uint32(len(p.Consts)))
	b = le.AppendUint32(b, p.InStride)
	b = le.AppendUint32(b, p.OutStride)
	for _, in := range p.Instrs {
		b = append(b, byte(in.Op), in.Flags, in.Reg, 0)
		for _, v := range in.fields() {
			b = le.AppendUint32(b, v)
		}
	}
	b = append(b, p.Consts...)
	b = le.AppendUint32(b, crc32.ChecksumIEEE(b))
	return b, nil
}

// Decode parses and validates a program image. Errors wrap ErrMalformed,
// ErrVersion or ErrBounds and give the byte offset or instruction index.
// Decode never panics and allocates at most a small multiple of len(b).
func Decode(b []byte) (*Program, error) {
	le := binary.LittleEndian
	if len(b) < HeaderSize+4 {
		return nil, fmt.Errorf("decode program: %d bytes, want at least %d (header and checksum): %w", len(b), HeaderSize+4, ErrMalformed)
	}
	if string(b[:4]) != Magic {
		return nil, fmt.Errorf("decode program: magic %q at offset 0, want %q: %w", b[:4], Magic, ErrMalformed)
	}
	if v := le.Uint16(b[4:]); v != Version {
		return nil, fmt.Errorf("decode program: version %d at offset 4, want %d: %w", v, Version, ErrVersion)
	}
	if f := le.Uint16(b[6:]); f != 0 {
		return nil, fmt.Errorf("decode program: reserved flags %#x at offset 6, want 0: %w", f, ErrMalformed)
	}
	p := &Program{
		Rows: le.Uint16(b[8:]), Cols: le.Uint16(b[10:]),
		SPADBytes: le.Uint32(b[12:]), ACCWords: le.Uint32(b[16:]),
		InStride: le.Uint32(b[28:]), OutStride: le.Uint32(b[32:]),
	}
	n, nc := le.Uint32(b[20:]), le.Uint32(b[24:])
	if n > MaxInstrs {
		return nil, fmt.Errorf("decode program: %d instructions at offset 20, want at most %d: %w", n, MaxInstrs, ErrMalformed)
	}
	if nc > MaxConstBytes {
		return nil, fmt.Errorf("decode program: %d constant bytes at offset 24, want at most %d: %w", nc, MaxConstBytes, ErrMalformed)
	}
	want := uint64(HeaderSize) + uint64(n)*InstrSize + uint64(nc) + 4
	if uint64(len(b)) != want {
		return nil, fmt.Errorf("decode program: %d bytes, header announces %d instructions and %d constant bytes (%d bytes in all): %w", len(b), n, nc, want, ErrMalformed)
	}
	body := b[:len(b)-4]
	if got, sum := crc32.ChecksumIEEE(body), le.Uint32(b[len(b)-4:]); got != sum {
		return nil, fmt.Errorf("decode program: checksum %#08x at offset %d, computed %#08x: %w", sum, len(b)-4, got, ErrMalformed)
	}
	p.Instrs = make([]Instr, n)
	off := HeaderSize
	for i := range p.Instrs {
		r := b[off:]
		if r[3] != 0 {
			return nil, fmt.Errorf("decode program: instruction %d at offset %d: reserved byte is %d, want 0: %w", i, off, r[3], ErrMalformed)
		}
		in := Instr{Op: Opcode(r[0]), Flags: r[1], Reg: r[2]}
		v := func(k int) uint32 { return le.Uint32(r[4+4*k:]) }
		in.A, in.B, in.C, in.D, in.E, in.F = v(0), v(1), v(2), v(3), v(4), v(5)
		in.G, in.H, in.I, in.J, in.K = v(6), v(7), v(8), v(9), v(10)
		p.Instrs[i] = in
		off += InstrSize
	}
	p.Consts = append([]byte(nil), b[off:off+int(nc)]...)
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("decode program: %w", err)
	}
	return p, nil
}

// Validate checks the header and every instruction: known opcodes and
// flags, operand sizes, array limits and on-chip bounds.
func (p *Program) Validate() error {
	if p.Rows == 0 || p.Cols == 0 {
		return fmt.Errorf("array %dx%d: want both dimensions > 0: %w", p.Rows, p.Cols, ErrMalformed)
	}
	if len(p.Instrs) > MaxInstrs || len(p.Consts) > MaxConstBytes {
		return fmt.Errorf("%d instructions, %d constant bytes: over the limits %d and %d: %w", len(p.Instrs), len(p.Consts), MaxInstrs, MaxConstBytes, ErrMalformed)
	}
	for i, in := range p.Instrs {
		if err := p.check(in); err != nil {
			return fmt.Errorf("instruction %d (%s): %w", i, in.Op, err)
		}
	}
	return nil
}

// span is a 2-D region: rows of width elements, stride apart, from base.
// It returns the exclusive end, or an error if the shape is inconsistent.
func span(what string, base, rows, width, stride uint32, limit uint32) error {
	if rows == 0 || width == 0 {
		return fmt.Errorf("%s: %d rows of %d, want both > 0: %w", what, rows, width, ErrMalformed)
	}
	if rows > 1 && stride < width {
		return fmt.Errorf("%s: stride %d is less than the row width %d: %w", what, stride, width, ErrMalformed)
	}
	end := uint64(base) + uint64(rows-1)*uint64(stride) + uint64(width)
	if end > uint64(limit) {
		return fmt.Errorf("%s: [%d, %d) exceeds the declared size %d: %w", what, base, end, limit, ErrBounds)
	}
	return nil
}

func (p *Program) check(in Instr) error {
	if in.Reg != 0 && in.Op != OpLoad && in.Op != OpStore {
		return fmt.Errorf("register r%d on an instruction without a DRAM operand: %w", in.Reg, ErrMalformed)
	}
	flagsOK := func(mask uint8) error {
		if in.Flags&^mask != 0 {
			return fmt.Errorf("flags %#x, allowed %#x: %w", in.Flags, mask, ErrMalformed)
		}
		return nil
	}
	switch in.Op {
	case OpNop:
		return flagsOK(0)
	case OpLoad, OpStore:
		if err := flagsOK(FlagACC); err != nil {
			return err
		}
		if in.Reg >= NumRegs {
			return fmt.Errorf("register r%d, want r0..r%d: %w", in.Reg, NumRegs-1, ErrMalformed)
		}
		if err := span("dram", in.A, in.C, in.D, in.E, math.MaxUint32); err != nil {
			return err
		}
		if in.Flags&FlagACC != 0 {
			if in.D%4 != 0 {
				return fmt.Errorf("acc transfer of %d bytes per row, want a multiple of 4: %w", in.D, ErrMalformed)
			}
			return span("acc", in.B, in.C, in.D/4, in.F, p.ACCWords)
		}
		return span("spad", in.B, in.C, in.D, in.F, p.SPADBytes)
	case OpMatMul:
		if err := flagsOK(FlagAccumulate); err != nil {
			return err
		}
		m, k, n := in.D, in.E, in.F
		if k > uint32(p.Rows) || n > uint32(p.Cols) {
			return fmt.Errorf("tile K=%d N=%d exceeds the %dx%d array: %w", k, n, p.Rows, p.Cols, ErrMalformed)
		}
		if err := span("matrix A", in.A, m, k, in.G, p.SPADBytes); err != nil {
			return err
		}
		if err := span("matrix B", in.B, k, n, in.H, p.SPADBytes); err != nil {
			return err
		}
		return span("accumulators", in.C, m, n, in.I, p.ACCWords)
	case OpBias:
		if err := flagsOK(0); err != nil {
			return err
		}
		if err := span("bias", in.B, 1, in.F, in.F, p.ACCWords); err != nil {
			return err
		}
		return span("accumulators", in.A, in.D, in.F, in.I, p.ACCWords)
	case OpAct:
		if in.Flags != ActReLU {
			return fmt.Errorf("activation %d, want %d (ReLU): %w", in.Flags, ActReLU, ErrMalformed)
		}
		return span("accumulators", in.A, in.D, in.F, in.I, p.ACCWords)
	case OpRequant:
		if err := flagsOK(0); err != nil {
			return err
		}
		lo, hi := int32(in.J), int32(in.K)
		if lo < -128 || hi > 127 || lo > hi {
			return fmt.Errorf("clamp [%d, %d], want -128 <= lo <= hi <= 127: %w", lo, hi, ErrMalformed)
		}
		if err := span("accumulators", in.A, in.D, in.F, in.I, p.ACCWords); err != nil {
			return err
		}
		if uint64(in.F)*2 > math.MaxUint32 {
			return fmt.Errorf("%d channels: %w", in.F, ErrMalformed)
		}
		if err := span("requant parameters", in.C, 1, 2*in.F, 2*in.F, p.ACCWords); err != nil {
			return err
		}
		return span("output", in.B, in.D, in.F, in.G, p.SPADBytes)
	case OpIm2Col, OpPool:
		mask := uint8(0)
		if in.Op == OpPool {
			mask = FlagAvg | FlagCountPad
		}
		if err := flagsOK(mask); err != nil {
			return err
		}
		g, err := ImageOf(in)
		if err != nil {
			return err
		}
		if in.Op == OpPool && in.K != 0 {
			return fmt.Errorf("pool has dilation field %#x, want 0: %w", in.K, ErrMalformed)
		}
		if err := span("input image", in.A, 1, uint32(g.H*g.W*g.C), 0, p.SPADBytes); err != nil {
			return err
		}
		rowW := uint64(g.KH * g.KW * g.C)
		if in.Op == OpPool {
			rowW = uint64(g.C)
		}
		if rowW > math.MaxUint32 || uint64(g.OH*g.OW) > math.MaxUint32 {
			return fmt.Errorf("output too large: %w", ErrMalformed)
		}
		return span("output", in.B, uint32(g.OH*g.OW), uint32(rowW), uint32(rowW), p.SPADBytes)
	}
	return fmt.Errorf("unknown opcode %d: %w", in.Op, ErrMalformed)
}

// MaxWindow bounds kernel sizes, strides and dilations of image
// instructions (8-bit window counters in the hardware).
const MaxWindow = 255

// Image is the geometry of an OpIm2Col or OpPool instruction.
type Image struct {
	H, W, C int // input, HWC layout
	KH, KW  int // window
	SH, SW  int // strides
	PT, PL  int // top and left padding (bottom and right follow from OH, OW)
	DH, DW  int // dilations (1 for pooling)
	OH, OW  int // output size
}

// ImageOf extracts and checks the geometry of an image instruction.
func ImageOf(in Instr) (Image, error) {
	var g Image
	g.H, g.W, g.C = int(in.C), int(in.D), int(in.E)
	g.KH, g.KW = Unpack(in.F)
	g.SH, g.SW = Unpack(in.G)
	g.PT, g.PL = Unpack(in.H)
	g.OH, g.OW = int(in.I), int(in.J)
	g.DH, g.DW = 1, 1
	if in.Op == OpIm2Col {
		g.DH, g.DW = Unpack(in.K)
	}
	if g.H <= 0 || g.W <= 0 || g.C <= 0 || g.H > 1<<16 || g.W > 1<<16 || g.C > 1<<16 {
		return g, fmt.Errorf("input %dx%dx%d, want each in [1, 65536]: %w", g.H, g.W, g.C, ErrMalformed)
	}
	if g.KH == 0 || g.KW == 0 || g.SH == 0 || g.SW == 0 || g.DH == 0 || g.DW == 0 {
		return g, fmt.Errorf("kernel %dx%d stride %dx%d dilation %dx%d, want all > 0: %w", g.KH, g.KW, g.SH, g.SW, g.DH, g.DW, ErrMalformed)
	}
	if g.KH > MaxWindow || g.KW > MaxWindow || g.SH > MaxWindow || g.SW > MaxWindow || g.DH > MaxWindow || g.DW > MaxWindow {
		return g, fmt.Errorf("kernel %dx%d stride %dx%d dilation %dx%d, want each at most %d: %w", g.KH, g.KW, g.SH, g.SW, g.DH, g.DW, MaxWindow, ErrMalformed)
	}
	if g.OH <= 0 || g.OW <= 0 || g.OH > 1<<16 || g.OW > 1<<16 {
		return g, fmt.Errorf("output %dx%d, want each in [1, 65536]: %w", g.OH, g.OW, ErrMalformed)
	}
	if g.PT >= g.DH*(g.KH-1)+1 || g.PL >= g.DW*(g.KW-1)+1 {
		return g, fmt.Errorf("padding %d,%d is not smaller than the window: %w", g.PT, g.PL, ErrMalformed)
	}
	return g, nil
}
