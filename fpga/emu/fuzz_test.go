package emu

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/atelier-ml/atelier/fpga/internal/wire"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// FuzzExecute loads any program that decodes on a small card and runs it:
// the card must never panic, whatever the instructions and arguments.
func FuzzExecute(f *testing.F) {
	seed := &isa.Program{Rows: 4, Cols: 4, SPADBytes: 256, ACCWords: 64, InStride: 8, OutStride: 8, Instrs: []isa.Instr{
		{Op: isa.OpLoad, Reg: 1, C: 2, D: 8, E: 8, F: 8},
		{Op: isa.OpMatMul, A: 0, B: 0, C: 0, D: 2, E: 4, F: 4, G: 8, H: 4, I: 4},
		{Op: isa.OpRequant, A: 0, B: 32, C: 16, D: 2, F: 4, G: 4, I: 4, J: uint32(0xffffff80), K: 127},
		{Op: isa.OpIm2Col, A: 0, B: 64, C: 2, D: 2, E: 2, F: isa.Pack(2, 2), G: isa.Pack(1, 1), H: isa.Pack(1, 1), I: 2, J: 2, K: isa.Pack(1, 1)},
		{Op: isa.OpPool, Flags: isa.FlagAvg, A: 0, B: 128, C: 2, D: 2, E: 2, F: isa.Pack(2, 2), G: isa.Pack(1, 1), I: 1, J: 1},
		{Op: isa.OpStore, Reg: 2, B: 32, C: 1, D: 8, E: 8, F: 8},
	}, Consts: []byte{1, 2, 3, 4}}
	img, err := seed.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img, uint8(2), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, iters uint8, off1, off2 uint64) {
		if len(b) < isa.HeaderSize+4 {
			return
		}
		b = append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
		d, err := NewDevice(Config{Rows: 4, Cols: 4, SPADBytes: 4096, ACCWords: 1024, DRAMBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := d.LoadProgram(b)
		if err != nil {
			return
		}
		in, _ := d.Alloc(4096)
		out, _ := d.Alloc(4096)
		rid, err := d.Start(id, uint32(iters%4)+1, [isa.NumRegs - 1]uint64{in + off1%8192, out + off2%8192})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		c1, err1 := d.Wait(rid, 1<<62)
		// Deterministic: a second run from the same state gives the same cycles and error.
		rid, _ = d.Start(id, uint32(iters%4)+1, [isa.NumRegs - 1]uint64{in + off1%8192, out + off2%8192})
		c2, err2 := d.Wait(rid, 1<<62)
		if c1 != c2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("runs differ: %d cycles %v, then %d cycles %v", c1, err1, c2, err2)
		}
	})
}

// FuzzHandle feeds arbitrary requests to the protocol handler.
func FuzzHandle(f *testing.F) {
	var e wire.Enc
	e.U64(4096)
	f.Add(uint8(wire.OpAlloc), e.B)
	f.Add(uint8(wire.OpInfo), []byte(nil))
	f.Add(uint8(wire.OpWait), []byte{1, 0, 0, 0, 1, 0, 0, 0})
	f.Add(uint8(wire.OpHello), wire.AppendHello(nil, wire.Hello{Revision: wire.Revision}))
	f.Add(uint8(wire.OpSubmit), wire.AppendSubmit(nil, &wire.Submit{Iterations: 1, TimeoutMs: 1,
		Writes: []wire.Copy{{Addr: 4096, Data: []byte{1, 2}}}, Reads: []wire.Copy{{Addr: 4096, Len: 2}}}))
	f.Fuzz(func(t *testing.T, op uint8, payload []byte) {
		d, err := NewDevice(Config{DRAMBytes: 1 << 20, SPADBytes: 4096, ACCWords: 1024})
		if err != nil {
			t.Fatal(err)
		}
		if wire.Op(op) == wire.OpWait && len(payload) >= 8 {
			binary.LittleEndian.PutUint32(payload[4:], 1) // keep waits short
		}
		if wire.Op(op) == wire.OpInject {
			return // a hung-run fault would make the next fuzz input wait
		}
		resp := handle(d, wire.Frame{Op: wire.Op(op), Payload: payload})
		if resp.Status != wire.StatusOK && len(resp.Payload) == 0 {
			t.Fatalf("error status %d without a message", resp.Status)
		}
	})
}
