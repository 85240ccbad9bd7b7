package isa

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
)

func sample() *Program {
	return &Program{
		Rows: 4, Cols: 4, SPADBytes: 256, ACCWords: 64, InStride: 16, OutStride: 40,
		Instrs: []Instr{
			{Op: OpLoad, Reg: 1, A: 0, B: 0, C: 1, D: 16, E: 16, F: 16},
			{Op: OpLoad, Reg: 0, A: 0, B: 16, C: 4, D: 4, E: 4, F: 4},
			{Op: OpLoad, Flags: FlagACC, Reg: 0, A: 16, B: 32, C: 1, D: 48, E: 48, F: 12},
			{Op: OpMatMul, A: 0, B: 16, C: 0, D: 4, E: 4, F: 4, G: 4, H: 4, I: 4},
			{Op: OpBias, A: 0, B: 32, D: 4, F: 4, I: 4},
			{Op: OpAct, Flags: ActReLU, A: 0, D: 4, F: 4, I: 4},
			{Op: OpRequant, A: 0, B: 64, C: 36, D: 4, F: 4, G: 4, I: 4, J: uint32(0xffffff80), K: 127},
			{Op: OpIm2Col, A: 64, B: 100, C: 2, D: 2, E: 4, F: Pack(1, 1), G: Pack(1, 1), H: 0, I: 2, J: 2, K: Pack(1, 1)},
			{Op: OpPool, Flags: FlagAvg, A: 64, B: 200, C: 2, D: 2, E: 4, F: Pack(2, 2), G: Pack(2, 2), I: 1, J: 1},
			{Op: OpStore, Reg: 2, A: 0, B: 64, C: 1, D: 16, E: 16, F: 16},
			{Op: OpNop},
		},
		Consts: []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	p := sample()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != HeaderSize+InstrSize*len(p.Instrs)+len(p.Consts)+4 {
		t.Fatalf("encoded %d bytes", len(b))
	}
	q, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip differs:\n%+v\n%+v", p, q)
	}
}

// reseal recomputes the checksum after a test edits the bytes.
func reseal(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
	return b
}

func TestDecodeErrors(t *testing.T) {
	good, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	instr := func(i, field int) int { return HeaderSize + i*InstrSize + field }
	cases := []struct {
		name string
		edit func([]byte) []byte
		want error
		msg  string
	}{
		{"short", func(b []byte) []byte { return b[:10] }, ErrMalformed, "want at least"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrMalformed, "magic"},
		{"version", func(b []byte) []byte { b[4] = 9; return reseal(b) }, ErrVersion, "version 9"},
		{"checksum", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }, ErrMalformed, "checksum"},
		{"truncated", func(b []byte) []byte { return reseal(b[:len(b)-8]) }, ErrMalformed, "header announces"},
		{"too many instructions", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[20:], MaxInstrs+1); return reseal(b) }, ErrMalformed, "at most"},
		{"unknown opcode", func(b []byte) []byte { b[instr(0, 0)] = 99; return reseal(b) }, ErrMalformed, "instruction 0"},
		{"reserved byte", func(b []byte) []byte { b[instr(1, 3)] = 1; return reseal(b) }, ErrMalformed, "reserved byte"},
		{"bad register", func(b []byte) []byte { b[instr(0, 2)] = 8; return reseal(b) }, ErrMalformed, "register r8"},
		{"register on compute", func(b []byte) []byte { b[instr(3, 2)] = 1; return reseal(b) }, ErrMalformed, "register r1"},
		{"spad out of bounds", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[instr(0, 8):], 250) // LOAD B
			return reseal(b)
		}, ErrBounds, "exceeds the declared size 256"},
		{"tile wider than array", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[instr(3, 4+5*4):], 5) // MATMUL F=N
			return reseal(b)
		}, ErrMalformed, "exceeds the 4x4 array"},
		{"bad clamp", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[instr(6, 4+9*4):], 200) // REQUANT J
			return reseal(b)
		}, ErrMalformed, "clamp"},
		{"bad activation", func(b []byte) []byte { b[instr(5, 1)] = 7; return reseal(b) }, ErrMalformed, "activation 7"},
		{"zero stride", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[instr(7, 4+6*4):], 0) // IM2COL G
			return reseal(b)
		}, ErrMalformed, "stride"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.edit(append([]byte(nil), good...))
			_, err := Decode(b)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Decode = %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func TestCycleModel(t *testing.T) {
	tm := DefaultTiming()
	cases := []struct {
		in   Instr
		want uint64
	}{
		{Instr{Op: OpNop}, 1},
		{Instr{Op: OpLoad, C: 2, D: 100}, 64 + 13}, // 200 bytes / 16 per cycle
		{Instr{Op: OpMatMul, D: 10, E: 32, F: 32}, 32 + 10 + 32 + 32},
		{Instr{Op: OpRequant, D: 3, F: 40}, 4 + 4}, // 120 / 32 → 4
		{Instr{Op: OpIm2Col, C: 4, D: 4, E: 2, F: Pack(3, 3), G: Pack(1, 1), I: 2, J: 2, K: Pack(1, 1)}, 72/32 + 1 + 4},
	}
	for _, c := range cases {
		if got := tm.Cycles(c.in); got != c.want {
			t.Errorf("%v: %d cycles, want %d", c.in, got, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, err := sample().Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:HeaderSize+4])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > HeaderSize+4 {
			b = reseal(append([]byte(nil), b...)) // let the fuzzer past the checksum
		}
		p, err := Decode(b)
		if err != nil {
			return
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded program does not re-encode: %v", err)
		}
		q, err := Decode(again)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("re-decode differs: %v", err)
		}
	})
}
