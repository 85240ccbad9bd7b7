package fpga_test

import (
	"context"
	"testing"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// nopSetup loads a one-instruction program and a 4 KiB buffer: what is
// left of an inference is the shim's and the protocol's cost.
func nopSetup(b *testing.B) (*fpga.Device, fpga.Program, fpga.Buffer) {
	_, target, _ := serve(b, emu.Config{})
	d := open(b, target)
	ctx := context.Background()
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: 1, ACCWords: 1, Instrs: []isa.Instr{{Op: isa.OpNop}}}
	img, err := p.Encode()
	if err != nil {
		b.Fatal(err)
	}
	prog, err := d.LoadProgram(ctx, img)
	if err != nil {
		b.Fatal(err)
	}
	buf, err := d.Alloc(ctx, 4096)
	if err != nil {
		b.Fatal(err)
	}
	return d, prog, buf
}

// BenchmarkSeparateCalls is one inference as four requests: write,
// start, wait, read.
func BenchmarkSeparateCalls(b *testing.B) {
	d, prog, buf := nopSetup(b)
	ctx := context.Background()
	in, out := make([]byte, 64), make([]byte, 40)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Write(ctx, buf, 0, in); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Execute(ctx, prog, 1, buf.Addr, buf.Addr); err != nil {
			b.Fatal(err)
		}
		if err := d.Read(ctx, buf, 1024, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmit is one inference as one fused job.
func BenchmarkSubmit(b *testing.B) {
	d, prog, buf := nopSetup(b)
	ctx := context.Background()
	in, out := make([]byte, 64), make([]byte, 40)
	j := &fpga.Job{Program: prog, Iterations: 1, Args: []uint64{buf.Addr, buf.Addr},
		Writes: []fpga.Copy{{Buf: buf, Data: in}}, Reads: []fpga.Copy{{Buf: buf, Off: 1024, Data: out}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Submit(ctx, j); err != nil {
			b.Fatal(err)
		}
	}
}
