package fpga_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/isa"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve starts an emulated card on a Unix socket in a temp dir and returns
// the card (for direct fault injection), its target and a stop function
// that returns once the server has closed its socket and connections.
func serve(t testing.TB, cfg emu.Config) (*emu.Device, string, func()) {
	t.Helper()
	dev, err := emu.NewDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "fpga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.ServeDevice(ctx, l, dev, quiet()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return dev, "unix:" + sock, stop
}

func open(t testing.TB, target string) *fpga.Device {
	t.Helper()
	d, err := fpga.Open(context.Background(), target, fpga.Config{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// copyProgram copies n-byte chunks from R1 to R2, adding constant bytes via
// the scratchpad round trip only (LOAD then STORE).
func copyProgram(t *testing.T, rows, cols, n int) []byte {
	t.Helper()
	p := &isa.Program{Rows: uint16(rows), Cols: uint16(cols), SPADBytes: uint32(n), ACCWords: 1, InStride: uint32(n), OutStride: uint32(n),
		Instrs: []isa.Instr{
			{Op: isa.OpLoad, Reg: 1, C: 1, D: uint32(n), E: uint32(n), F: uint32(n)},
			{Op: isa.OpStore, Reg: 2, C: 1, D: uint32(n), E: uint32(n), F: uint32(n)},
		}, Consts: []byte{1, 2, 3}}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeviceRoundTrip(t *testing.T) {
	_, target, _ := serve(t, emu.Config{Name: "card0", ClockHz: 100_000_000})
	d := open(t, target)
	ctx := context.Background()
	info, err := d.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "card0" || info.Rows != 32 || info.Cols != 32 || info.ClockHz != 1e8 || info.Firmware == "" || info.DRAMBytes == 0 {
		t.Fatalf("info %+v", info)
	}
	in, err := d.Alloc(ctx, 48)
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Alloc(ctx, 48)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 48)
	for i := range data {
		data[i] = byte(3*i + 1)
	}
	if err := d.Write(ctx, in, 0, data); err != nil {
		t.Fatal(err)
	}
	prog, err := d.LoadProgram(ctx, copyProgram(t, 32, 32, 16))
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Execute(ctx, prog, 3, in.Addr, out.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(3 * 2 * (64 + 1)); st.Cycles != want {
		t.Errorf("%d cycles, want %d", st.Cycles, want)
	}
	if want := time.Duration(st.Cycles * 10); st.DeviceTime != want {
		t.Errorf("device time %v, want %v at 100 MHz", st.DeviceTime, want)
	}
	got := make([]byte, 48)
	if err := d.Read(ctx, out, 0, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatalf("output %v, want %v", got, data)
	}
	if err := d.Free(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := d.UnloadProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceErrors(t *testing.T) {
	_, target, _ := serve(t, emu.Config{DRAMBytes: 1 << 20})
	d := open(t, target)
	ctx := context.Background()
	buf, err := d.Alloc(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	bad := copyProgram(t, 32, 32, 16)
	bad[len(bad)-1] ^= 0xff
	prog, _ := d.LoadProgram(ctx, copyProgram(t, 32, 32, 16))
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"corrupt program", func() error { _, err := d.LoadProgram(ctx, bad); return err }, fpga.ErrProgram},
		{"program for another array", func() error { _, err := d.LoadProgram(ctx, copyProgram(t, 16, 16, 16)); return err }, fpga.ErrIncompatible},
		{"write outside buffer", func() error { return d.Write(ctx, buf, 90, make([]byte, 20)) }, fpga.ErrBadAddress},
		{"device-side bad address", func() error { return d.Write(ctx, fpga.Buffer{Addr: buf.Addr, Size: 1 << 30}, 4000, []byte{1}) }, fpga.ErrBadAddress},
		{"out of memory", func() error { _, err := d.Alloc(ctx, 2<<20); return err }, fpga.ErrNoMemory},
		{"free twice", func() error { _ = d.Free(ctx, fpga.Buffer{Addr: 12345}); return d.Free(ctx, fpga.Buffer{Addr: 12345}) }, fpga.ErrNotFound},
		{"unknown run", func() error { _, err := d.Wait(ctx, fpga.Run{ID: 999}); return err }, fpga.ErrNotFound},
		{"kernel reads unmapped memory", func() error { _, err := d.Execute(ctx, prog, 1, 0, 0); return err }, fpga.ErrBadAddress},
		{"too many args", func() error { _, err := d.Start(ctx, prog, 1, 1, 2, 3, 4, 5, 6, 7, 8); return err }, fpga.ErrProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			var de *fpga.DeviceError
			if !errors.Is(err, c.want) || !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DeviceError wrapping %v", err, c.want)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Info(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
}

func TestFaultInjection(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*fpga.Device, fpga.Buffer, fpga.Program) {
		_, target, _ := serve(t, emu.Config{})
		d := open(t, target)
		buf, err := d.Alloc(ctx, 64)
		if err != nil {
			t.Fatal(err)
		}
		p, err := d.LoadProgram(ctx, copyProgram(t, 32, 32, 16))
		if err != nil {
			t.Fatal(err)
		}
		return d, buf, p
	}
	t.Run("reset", func(t *testing.T) {
		d, buf, p := setup(t)
		if err := d.InjectFault(ctx, fpga.FaultReset, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Write(ctx, buf, 0, []byte{1}); !errors.Is(err, fpga.ErrReset) || !fpga.Recoverable(err) {
			t.Fatalf("write during reset: %v, want ErrReset", err)
		}
		if err := d.Write(ctx, buf, 0, []byte{1}); !errors.Is(err, fpga.ErrBadAddress) {
			t.Fatalf("write to a buffer from before the reset: %v, want ErrBadAddress", err)
		}
		if _, err := d.Start(ctx, p, 1, buf.Addr, buf.Addr); !errors.Is(err, fpga.ErrNotFound) {
			t.Fatalf("start a program from before the reset: %v, want ErrNotFound", err)
		}
	})
	t.Run("dma timeout on copy", func(t *testing.T) {
		d, buf, _ := setup(t)
		if err := d.InjectFault(ctx, fpga.FaultDMATimeout, 1); err != nil {
			t.Fatal(err)
		}
		if err := d.Write(ctx, buf, 0, []byte{1}); err != nil {
			t.Fatalf("first copy: %v (the fault was armed for the second)", err)
		}
		if err := d.Read(ctx, buf, 0, make([]byte, 4)); !errors.Is(err, fpga.ErrDMA) {
			t.Fatalf("second copy: %v, want ErrDMA", err)
		}
	})
	t.Run("dma timeout in kernel", func(t *testing.T) {
		d, buf, p := setup(t)
		if err := d.InjectFault(ctx, fpga.FaultDMATimeout, 0); err != nil {
			t.Fatal(err)
		}
		r, err := d.Start(ctx, p, 1, buf.Addr, buf.Addr+16)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := d.Wait(wctx, r); !errors.Is(err, fpga.ErrTimeout) {
			t.Fatalf("wait on a hung kernel: %v, want ErrTimeout", err)
		}
		if _, err := d.Start(ctx, p, 1, buf.Addr, buf.Addr+16); !errors.Is(err, fpga.ErrBusy) {
			t.Fatalf("start while hung: %v, want ErrBusy", err)
		}
		if err := d.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		buf, _ = d.Alloc(ctx, 64)
		p, _ = d.LoadProgram(ctx, copyProgram(t, 32, 32, 16))
		if _, err := d.Execute(ctx, p, 1, buf.Addr, buf.Addr+16); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	})
	for _, dir := range []string{"write", "read"} {
		t.Run("bit flip on "+dir, func(t *testing.T) {
			d, buf, _ := setup(t)
			if err := d.Write(ctx, buf, 0, []byte("0123456789abcdef")); err != nil {
				t.Fatal(err)
			}
			if err := d.InjectFault(ctx, fpga.FaultBitFlip, 0); err != nil {
				t.Fatal(err)
			}
			var err error
			if dir == "write" {
				err = d.Write(ctx, buf, 0, []byte("0123456789abcdef"))
			} else {
				err = d.Read(ctx, buf, 0, make([]byte, 16))
			}
			if !errors.Is(err, fpga.ErrDMA) {
				t.Fatalf("%s with a flipped bit: %v, want ErrDMA", dir, err)
			}
		})
	}
	t.Run("device lost", func(t *testing.T) {
		d, buf, _ := setup(t)
		if err := d.InjectFault(ctx, fpga.FaultDeviceLost, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Write(ctx, buf, 0, []byte{1}); !errors.Is(err, fpga.ErrDeviceLost) || fpga.Recoverable(err) {
			t.Fatalf("write: %v, want unrecoverable ErrDeviceLost", err)
		}
		if err := d.Reset(ctx); !errors.Is(err, fpga.ErrDeviceLost) {
			t.Fatalf("reset of a lost device: %v, want ErrDeviceLost", err)
		}
	})
	t.Run("emulator gone", func(t *testing.T) {
		_, target, stop := serve(t, emu.Config{})
		d := open(t, target)
		stop()
		// The server closes connections and the socket; the next call fails to reconnect.
		var err error
		for i := 0; i < 2; i++ {
			_, err = d.Info(ctx)
		}
		if !errors.Is(err, fpga.ErrDeviceLost) {
			t.Fatalf("info after the emulator stopped: %v, want ErrDeviceLost", err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, target := range []string{"nocolon", "tcp:127.0.0.1:1", "unix:"} {
		if _, err := fpga.Open(ctx, target, fpga.Config{}, quiet()); err == nil {
			t.Errorf("Open(%q) succeeded", target)
		}
	}
	if _, err := fpga.Open(ctx, "unix:"+filepath.Join(t.TempDir(), "none.sock"), fpga.Config{}, quiet()); !errors.Is(err, fpga.ErrDeviceLost) {
		t.Errorf("Open of a missing socket: %v, want ErrDeviceLost", err)
	}
}
