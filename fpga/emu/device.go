package emu

import (
	"fmt"
	"hash/crc32"
	"sort"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/fpga/internal/wire"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// Config describes the emulated card. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	Name             string
	Firmware         string // reported bitstream / firmware id
	Rows, Cols       int    // systolic array
	ClockHz          uint64
	DRAMBytes        uint64 // on-card memory
	SPADBytes        int    // on-chip int8 scratchpad
	ACCWords         int    // on-chip int32 accumulators
	DMABytesPerCycle int
	DMASetupCycles   int
	VectorLanes      int
	GatherBytes      int
	// Pace makes a kernel run take at least its modelled device time
	// (cycles / clock) of wall time, so host-side timing looks like the
	// card's. Off by default: tests want results fast.
	Pace bool
}

// DefaultConfig is a 32×32 array at 250 MHz with 256 MiB of DRAM, an
// 8 MiB scratchpad and 1 Mi accumulator words.
func DefaultConfig() Config {
	t := isa.DefaultTiming()
	return Config{
		Name: "atelier-emu", Firmware: "atelier-sa-v1",
		Rows: t.Rows, Cols: t.Cols, ClockHz: 250_000_000,
		DRAMBytes: 256 << 20, SPADBytes: 8 << 20, ACCWords: 1 << 20,
		DMABytesPerCycle: t.DMABytesPerCycle, DMASetupCycles: t.DMASetupCycles,
		VectorLanes: t.VectorLanes, GatherBytes: t.GatherBytes,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Firmware == "" {
		c.Firmware = d.Firmware
	}
	set(&c.Rows, d.Rows)
	set(&c.Cols, d.Cols)
	set(&c.SPADBytes, d.SPADBytes)
	set(&c.ACCWords, d.ACCWords)
	set(&c.DMABytesPerCycle, d.DMABytesPerCycle)
	set(&c.DMASetupCycles, d.DMASetupCycles)
	set(&c.VectorLanes, d.VectorLanes)
	set(&c.GatherBytes, d.GatherBytes)
	if c.ClockHz == 0 {
		c.ClockHz = d.ClockHz
	}
	if c.DRAMBytes == 0 {
		c.DRAMBytes = d.DRAMBytes
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Rows < 1 || c.Rows > 1024 || c.Cols < 1 || c.Cols > 1024:
		return fmt.Errorf("emulator config: rows/cols %dx%d, want 1..1024 each", c.Rows, c.Cols)
	case c.SPADBytes < 0 || c.SPADBytes > 1<<30:
		return fmt.Errorf("emulator config: spad_bytes %d, want 1..%d", c.SPADBytes, 1<<30)
	case c.ACCWords < 0 || c.ACCWords > 1<<28:
		return fmt.Errorf("emulator config: acc_words %d, want 1..%d", c.ACCWords, 1<<28)
	case c.DRAMBytes > 1<<40:
		return fmt.Errorf("emulator config: dram_bytes %d, want at most 1 TiB", c.DRAMBytes)
	}
	return nil
}

// Fault is an injectable device fault.
type Fault uint8

// The faults. docs/fpga.md describes how each one shows to the host.
const (
	FaultNone       Fault = iota
	FaultReset            // the card resets: programs, buffers and runs are gone; the request fails with StatusReset
	FaultDMATimeout       // the next DMA (host copy or kernel run) never completes
	FaultBitFlip          // the next host copy flips one bit in transit (the transfer CRC catches it)
	FaultDeviceLost       // the card stops answering: every later request fails with StatusLost
	FaultDMAStuck         // from now on every DMA times out, across resets (the card stays down)
	numFaults
)

var faultNames = [...]string{"none", "reset", "dma_timeout", "bit_flip", "device_lost", "dma_stuck"}

func (f Fault) String() string {
	if f < numFaults {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", uint8(f))
}

// ParseFault parses a fault name as String prints it.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if n == s && i > 0 {
			return Fault(i), nil
		}
	}
	return FaultNone, fmt.Errorf("fault %q: want one of reset, dma_timeout, bit_flip, device_lost, dma_stuck", s)
}

type region struct {
	addr uint64
	data []byte
}

type program struct {
	prog      *isa.Program
	constBase uint64
}

type run struct {
	done   chan struct{}
	cycles uint64
	err    error
}

// Device is the emulated card: DRAM with an allocator, loaded programs,
// one Core, and fault injection. It is safe for concurrent use; kernel
// runs execute one at a time on a background goroutine.
type Device struct {
	cfg  Config
	mu   sync.Mutex
	core *Core
	mem  []region // sorted by addr
	used uint64

	progs   map[uint32]*program
	runs    map[uint32]*run
	nextID  uint32
	running bool
	gen     uint64        // incremented by every reset
	hung    chan struct{} // closed on reset: releases a hung run

	pending  Fault
	after    uint32 // requests until pending fires
	lost     bool
	dmaStuck bool // every DMA times out; a reset does not help
}

// NewDevice returns an emulated card. It fails if cfg is invalid.
func NewDevice(cfg Config) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &Device{cfg: cfg, progs: map[uint32]*program{}, runs: map[uint32]*run{}, hung: make(chan struct{})}
	d.core = NewCore(d.timing(), cfg.SPADBytes, cfg.ACCWords)
	return d, nil
}

func (d *Device) timing() isa.Timing {
	c := d.cfg
	return isa.Timing{Rows: c.Rows, Cols: c.Cols, DMABytesPerCycle: c.DMABytesPerCycle, DMASetupCycles: c.DMASetupCycles, VectorLanes: c.VectorLanes, GatherBytes: c.GatherBytes}
}

// Info describes the card.
func (d *Device) Info() wire.Info {
	c := d.cfg
	return wire.Info{
		Name: c.Name, Firmware: c.Firmware, Rows: uint32(c.Rows), Cols: uint32(c.Cols), ClockHz: c.ClockHz,
		DRAMBytes: c.DRAMBytes, SPADBytes: uint32(c.SPADBytes), ACCWords: uint32(c.ACCWords),
		DMABytesPerCycle: uint32(c.DMABytesPerCycle), DMASetupCycles: uint32(c.DMASetupCycles),
		VectorLanes: uint32(c.VectorLanes), GatherBytes: uint32(c.GatherBytes),
	}
}

// Inject arms fault f to fire on the request after `after` more requests
// (0: the next one). FaultNone disarms.
func (d *Device) Inject(f Fault, after uint32) error {
	if f >= numFaults {
		return fmt.Errorf("inject: %v: %w", f, ErrIllegal)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending, d.after = f, after
	return nil
}

// arm is called with mu held at the start of every request; it returns
// the fault that fires on this request, if any. DMA faults count and fire
// only on requests that move data (accept lists them).
func (d *Device) arm(accept []Fault) Fault {
	if d.pending == FaultNone {
		return FaultNone
	}
	if d.pending == FaultDMATimeout || d.pending == FaultBitFlip {
		ok := false
		for _, f := range accept {
			ok = ok || f == d.pending
		}
		if !ok {
			return FaultNone
		}
	}
	if d.after > 0 {
		d.after--
		return FaultNone
	}
	f := d.pending
	d.pending = FaultNone
	return f
}

// begin starts a request: it fails when the device is lost, fires due
// faults and returns the fault left for the request itself to apply.
func (d *Device) begin(accept ...Fault) (Fault, error) {
	if d.lost {
		return FaultNone, ErrDeviceLost
	}
	f := d.arm(accept)
	if f == FaultDMAStuck {
		d.dmaStuck = true
		f = FaultNone
	}
	if d.dmaStuck && f == FaultNone {
		for _, a := range accept {
			if a == FaultDMATimeout {
				f = FaultDMATimeout
			}
		}
	}
	switch f {
	case FaultReset:
		d.resetLocked()
		return FaultNone, ErrReset
	case FaultDeviceLost:
		d.lost = true
		d.resetLocked()
		return FaultNone, ErrDeviceLost
	default:
		return f, nil
	}
}

func (d *Device) resetLocked() {
	d.mem, d.used = nil, 0
	d.progs = map[uint32]*program{}
	d.runs = map[uint32]*run{}
	d.running = false
	d.gen++
	close(d.hung)
	d.hung = make(chan struct{})
	clear(d.core.spad)
	clear(d.core.acc)
}

// Reset clears the card: programs, buffers and runs are gone and a hung
// run is abandoned. A lost device stays lost.
func (d *Device) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost {
		return ErrDeviceLost
	}
	d.pending = FaultNone
	d.resetLocked()
	return nil
}

const pageSize = 4096

// Alloc reserves size bytes of DRAM (rounded up to 4 KiB) and returns the
// device address. Memory is zeroed.
func (d *Device) Alloc(size uint64) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.begin(); err != nil {
		return 0, err
	}
	return d.allocLocked(size)
}

func (d *Device) allocLocked(size uint64) (uint64, error) {
	if size == 0 {
		return 0, fmt.Errorf("alloc 0 bytes: %w", ErrNoMemory)
	}
	rounded := (size + pageSize - 1) / pageSize * pageSize
	if rounded < size || d.used+rounded > d.cfg.DRAMBytes {
		return 0, fmt.Errorf("alloc %d bytes with %d of %d in use: %w", size, d.used, d.cfg.DRAMBytes, ErrNoMemory)
	}
	// First fit in the address space [pageSize, DRAMBytes+pageSize): address 0 stays unmapped.
	addr := uint64(pageSize)
	i := 0
	for ; i < len(d.mem); i++ {
		r := d.mem[i]
		if addr+rounded <= r.addr {
			break
		}
		addr = r.addr + (uint64(len(r.data))+pageSize-1)/pageSize*pageSize
	}
	if addr+rounded > d.cfg.DRAMBytes+pageSize {
		return 0, fmt.Errorf("alloc %d bytes: no free range large enough: %w", size, ErrNoMemory)
	}
	d.mem = append(d.mem, region{})
	copy(d.mem[i+1:], d.mem[i:])
	d.mem[i] = region{addr: addr, data: make([]byte, size)}
	d.used += rounded
	return addr, nil
}

// Free releases the allocation that starts at addr.
func (d *Device) Free(addr uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.begin(); err != nil {
		return err
	}
	for i, r := range d.mem {
		if r.addr == addr {
			for _, p := range d.progs {
				if p.constBase == addr {
					return fmt.Errorf("free %#x: holds a program's constants; unload the program: %w", addr, ErrBadAddress)
				}
			}
			d.used -= (uint64(len(r.data)) + pageSize - 1) / pageSize * pageSize
			d.mem = append(d.mem[:i], d.mem[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("free %#x: no allocation starts there: %w", addr, ErrNotFound)
}

// find returns the bytes [addr, addr+n) inside one allocation.
func (d *Device) find(addr uint64, n int) ([]byte, error) {
	i := sort.Search(len(d.mem), func(i int) bool { return d.mem[i].addr > addr }) - 1
	if i < 0 {
		return nil, fmt.Errorf("address %#x: %w", addr, ErrBadAddress)
	}
	r := d.mem[i]
	off := addr - r.addr
	if off+uint64(n) > uint64(len(r.data)) || off+uint64(n) < off {
		return nil, fmt.Errorf("range [%#x, %#x) leaves the %d-byte allocation at %#x: %w", addr, addr+uint64(n), len(r.data), r.addr, ErrBadAddress)
	}
	return r.data[off : off+uint64(n)], nil
}

// Write copies data to DRAM at addr and returns the CRC-32 of the bytes as
// the device stored them.
func (d *Device) Write(addr uint64, data []byte) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.begin(FaultDMATimeout, FaultBitFlip)
	if err != nil {
		return 0, err
	}
	dst, err := d.find(addr, len(data))
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if f == FaultDMATimeout {
		return 0, fmt.Errorf("write %d bytes at %#x: %w", len(data), addr, ErrDMATimeout)
	}
	copy(dst, data)
	if f == FaultBitFlip && len(dst) > 0 {
		dst[len(dst)/2] ^= 0x10 // corrupted in transit: stored wrong
	}
	return crc32.ChecksumIEEE(dst), nil
}

// Read copies n bytes from DRAM at addr. The CRC is of the stored bytes;
// a bit-flip fault corrupts the returned copy after the CRC is taken.
func (d *Device) Read(addr uint64, n int) ([]byte, uint32, error) {
	return d.readAppend(nil, addr, n)
}

// readAppend is Read appending the bytes to dst (the protocol handler
// reads into its reused response buffer).
func (d *Device) readAppend(dst []byte, addr uint64, n int) ([]byte, uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.begin(FaultDMATimeout, FaultBitFlip)
	if err != nil {
		return nil, 0, err
	}
	src, err := d.find(addr, n)
	if err != nil {
		return nil, 0, fmt.Errorf("read: %w", err)
	}
	if f == FaultDMATimeout {
		return nil, 0, fmt.Errorf("read %d bytes at %#x: %w", n, addr, ErrDMATimeout)
	}
	base := len(dst)
	out := append(dst, src...)
	sum := crc32.ChecksumIEEE(out[base:])
	if f == FaultBitFlip && len(out) > base {
		out[base+(len(out)-base)/2] ^= 0x10
	}
	return out, sum, nil
}

// LoadProgram decodes a program image, checks it against the card and
// places its constants in DRAM. It returns the program id and the
// constants' base address.
func (d *Device) LoadProgram(image []byte) (uint32, uint64, error) {
	p, err := isa.Decode(image)
	if err != nil {
		return 0, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.begin(); err != nil {
		return 0, 0, err
	}
	if int(p.Rows) != d.cfg.Rows || int(p.Cols) != d.cfg.Cols {
		return 0, 0, fmt.Errorf("program for a %dx%d array, card has %dx%d: %w", p.Rows, p.Cols, d.cfg.Rows, d.cfg.Cols, ErrIncompatible)
	}
	if int(p.SPADBytes) > d.cfg.SPADBytes || int(p.ACCWords) > d.cfg.ACCWords {
		return 0, 0, fmt.Errorf("program needs %d scratchpad bytes and %d accumulator words, card has %d and %d: %w", p.SPADBytes, p.ACCWords, d.cfg.SPADBytes, d.cfg.ACCWords, ErrIncompatible)
	}
	var base uint64
	if len(p.Consts) > 0 {
		if base, err = d.allocLocked(uint64(len(p.Consts))); err != nil {
			return 0, 0, fmt.Errorf("program constants: %w", err)
		}
		dst, _ := d.find(base, len(p.Consts))
		copy(dst, p.Consts)
	}
	d.nextID++
	d.progs[d.nextID] = &program{prog: p, constBase: base}
	return d.nextID, base, nil
}

// UnloadProgram drops a program and frees its constants.
func (d *Device) UnloadProgram(id uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.begin(); err != nil {
		return err
	}
	p, ok := d.progs[id]
	if !ok {
		return fmt.Errorf("program %d: %w", id, ErrNotFound)
	}
	delete(d.progs, id)
	for i, r := range d.mem {
		if p.constBase != 0 && r.addr == p.constBase {
			d.used -= (uint64(len(r.data)) + pageSize - 1) / pageSize * pageSize
			d.mem = append(d.mem[:i], d.mem[i+1:]...)
			break
		}
	}
	return nil
}

// Start runs program id `iterations` times with R1..R7 = args and returns
// a run id for Wait. One run executes at a time.
func (d *Device) Start(id uint32, iterations uint32, args [isa.NumRegs - 1]uint64) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.begin(FaultDMATimeout)
	if err != nil {
		return 0, err
	}
	p, ok := d.progs[id]
	if !ok {
		return 0, fmt.Errorf("start program %d: %w", id, ErrNotFound)
	}
	if d.running {
		return 0, fmt.Errorf("start program %d: %w", id, ErrBusy)
	}
	var regs [isa.NumRegs]uint64
	regs[0] = p.constBase
	copy(regs[1:], args[:])
	d.nextID++
	rid := d.nextID
	r := &run{done: make(chan struct{})}
	d.runs[rid] = r
	d.running = true
	hung, gen := d.hung, d.gen
	go func() {
		if f == FaultDMATimeout {
			<-hung // the DMA engine never finishes; only a reset releases it
			d.mu.Lock()
			r.err = ErrDMATimeout
			if d.gen == gen {
				d.running = false
			}
			d.mu.Unlock()
			close(r.done)
			return
		}
		began := time.Now()
		d.mu.Lock()
		r.cycles, r.err = d.core.Run(p.prog, lockedMem{d}, regs, int(iterations))
		d.mu.Unlock()
		if d.cfg.Pace {
			select {
			case <-time.After(time.Until(began.Add(d.DeviceTime(r.cycles)))):
			case <-hung: // a reset abandons the run
			}
		}
		d.mu.Lock()
		if d.gen == gen {
			d.running = false
		}
		d.mu.Unlock()
		close(r.done)
	}()
	return rid, nil
}

// lockedMem is the DRAM view of a run; the caller holds d.mu.
type lockedMem struct{ d *Device }

func (m lockedMem) ReadAt(addr uint64, p []byte) error {
	src, err := m.d.find(addr, len(p))
	if err != nil {
		return err
	}
	copy(p, src)
	return nil
}

func (m lockedMem) WriteAt(addr uint64, p []byte) error {
	dst, err := m.d.find(addr, len(p))
	if err != nil {
		return err
	}
	copy(dst, p)
	return nil
}

// Wait waits up to timeout for run id and returns its cycle count. A run's
// result can be collected once.
func (d *Device) Wait(id uint32, timeout time.Duration) (uint64, error) {
	d.mu.Lock()
	if _, err := d.begin(); err != nil {
		d.mu.Unlock()
		return 0, err
	}
	r, ok := d.runs[id]
	d.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	select {
	case <-r.done: // finished already: no timer
	default:
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-r.done:
		case <-t.C:
			return 0, fmt.Errorf("run %d after %v: %w", id, timeout, ErrWaitTimeout)
		}
	}
	d.mu.Lock()
	delete(d.runs, id)
	d.mu.Unlock()
	return r.cycles, r.err
}

// DeviceTime converts cycles to time at the card's clock.
func (d *Device) DeviceTime(cycles uint64) time.Duration {
	return time.Duration(float64(cycles) / float64(d.cfg.ClockHz) * 1e9)
}
