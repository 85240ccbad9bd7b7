package fpga_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// Open a card (here an emulator on a Unix socket), load a program that
// copies 4-byte chunks from R1 to R2, run it over two
// chunks and read the result.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "fpga-example")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "card.sock")
	l, _ := net.Listen("unix", sock)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- emu.Serve(ctx, l, emu.Config{Name: "example"}, slog.New(slog.DiscardHandler)) }()
	defer func() { stop(); <-done }()

	dev, err := fpga.Open(ctx, "unix:"+sock, fpga.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	info, _ := dev.Info(ctx)
	img, _ := (&isa.Program{Rows: uint16(info.Rows), Cols: uint16(info.Cols), SPADBytes: 4, ACCWords: 1, InStride: 4, OutStride: 4,
		Instrs: []isa.Instr{
			{Op: isa.OpLoad, Reg: 1, C: 1, D: 4, E: 4, F: 4},
			{Op: isa.OpStore, Reg: 2, C: 1, D: 4, E: 4, F: 4},
		}}).Encode()
	prog, _ := dev.LoadProgram(ctx, img)
	in, _ := dev.Alloc(ctx, 8)
	out, _ := dev.Alloc(ctx, 8)
	_ = dev.Write(ctx, in, 0, []byte("atelier!"))
	st, err := dev.Execute(ctx, prog, 2, in.Addr, out.Addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	got := make([]byte, 8)
	_ = dev.Read(ctx, out, 0, got)
	fmt.Printf("%s %dx%d: %q in %d cycles (%v)\n", info.Name, info.Rows, info.Cols, got, st.Cycles, st.DeviceTime)

	// The same inference as one job: one round trip to the card.
	job := &fpga.Job{Program: prog, Iterations: 2, Args: []uint64{in.Addr, out.Addr},
		Writes: []fpga.Copy{{Buf: in, Data: []byte("workshop")}},
		Reads:  []fpga.Copy{{Buf: out, Data: got}}}
	if st, err = dev.Submit(ctx, job); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("submitted: %q in %d cycles\n", got, st.Cycles)
	// Output:
	// example 32x32: "atelier!" in 260 cycles (1.04µs)
	// submitted: "workshop" in 260 cycles
}
