package emu

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga/isa"
)

func TestAllocatorFirstFitAndLimits(t *testing.T) {
	d, err := NewDevice(Config{DRAMBytes: 16 * pageSize})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.Alloc(3 * pageSize)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Alloc(1)
	if err != nil {
		t.Fatal(err)
	}
	if a != pageSize || b != 4*pageSize {
		t.Fatalf("addresses %#x %#x, want %#x %#x", a, b, pageSize, 4*pageSize)
	}
	if _, err := d.Alloc(13 * pageSize); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("over capacity: %v", err)
	}
	if err := d.Free(a); err != nil {
		t.Fatal(err)
	}
	c, err := d.Alloc(2 * pageSize) // reuses the hole at the start
	if err != nil || c != pageSize {
		t.Fatalf("first fit: %#x, %v", c, err)
	}
	// Reads and writes stay inside one allocation.
	if _, err := d.Write(b, make([]byte, 2)); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("write past a 1-byte allocation: %v", err)
	}
	if _, _, err := d.Read(0, 1); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("read at address 0: %v", err)
	}
	if _, err := d.Alloc(0); err == nil {
		t.Fatal("alloc 0 succeeded")
	}
}

func TestProgramLifecycle(t *testing.T) {
	d, err := NewDevice(Config{SPADBytes: 64, ACCWords: 16})
	if err != nil {
		t.Fatal(err)
	}
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: 16, ACCWords: 1, Instrs: []isa.Instr{{Op: isa.OpNop}}, Consts: make([]byte, 100)}
	img, _ := p.Encode()
	id, base, err := d.LoadProgram(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Free(base); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("freeing program constants: %v", err)
	}
	rid, err := d.Start(id, 2, [isa.NumRegs - 1]uint64{})
	if err != nil {
		t.Fatal(err)
	}
	cycles, err := d.Wait(rid, time.Minute)
	if err != nil || cycles != 2 {
		t.Fatalf("wait: %d cycles, %v; want 2", cycles, err)
	}
	if _, err := d.Wait(rid, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second wait: %v", err)
	}
	if err := d.UnloadProgram(id); err != nil {
		t.Fatal(err)
	}
	if d.used != 0 {
		t.Fatalf("%d bytes in use after unloading", d.used)
	}
	big := *p
	big.SPADBytes = 65
	img, _ = big.Encode()
	if _, _, err := d.LoadProgram(img); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("program larger than the scratchpad: %v", err)
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second listener: %v", err)
	}
	// A stale socket (listener gone, file left behind) is replaced.
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	l.Close()
	l2, err := ListenUnix(path)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l2.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := ListenUnix(file); err == nil {
		t.Fatal("listening over a regular file succeeded")
	}
}

func TestPaceTakesAtLeastTheDeviceTime(t *testing.T) {
	// 1 kHz clock: a 2-iteration NOP program (2 cycles) takes 2 ms of device time.
	d, err := NewDevice(Config{ClockHz: 1000, Pace: true})
	if err != nil {
		t.Fatal(err)
	}
	p := &isa.Program{Rows: 32, Cols: 32, SPADBytes: 1, ACCWords: 1, Instrs: []isa.Instr{{Op: isa.OpNop}}}
	img, _ := p.Encode()
	id, _, err := d.LoadProgram(img)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rid, err := d.Start(id, 2, [isa.NumRegs - 1]uint64{})
	if err != nil {
		t.Fatal(err)
	}
	cycles, err := d.Wait(rid, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A lower bound only: pacing never finishes early.
	if el := time.Since(start); cycles != 2 || el < d.DeviceTime(cycles) {
		t.Fatalf("%d cycles in %v, want 2 cycles taking at least %v", cycles, el, d.DeviceTime(cycles))
	}
}
