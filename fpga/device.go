package fpga

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/fpga/internal/wire"
)

// Info describes a card.
type Info struct {
	Name             string
	Firmware         string // bitstream / firmware id
	Rows, Cols       int    // systolic array
	ClockHz          uint64
	DRAMBytes        uint64 // on-card memory
	SPADBytes        int    // on-chip scratchpad
	ACCWords         int    // on-chip accumulator words
	DMABytesPerCycle int
	DMASetupCycles   int
	VectorLanes      int
	GatherBytes      int
}

// String is a stable one-line description, used in compiler cache keys.
func (i Info) String() string {
	return fmt.Sprintf("%s fw=%s array=%dx%d clock=%d dram=%d spad=%d acc=%d dma=%d/%d lanes=%d gather=%d",
		i.Name, i.Firmware, i.Rows, i.Cols, i.ClockHz, i.DRAMBytes, i.SPADBytes, i.ACCWords,
		i.DMABytesPerCycle, i.DMASetupCycles, i.VectorLanes, i.GatherBytes)
}

// RunStats is what a finished kernel run reports.
type RunStats struct {
	Cycles     uint64
	DeviceTime time.Duration // Cycles at the card's clock
}

// Fault is an injectable fault (emulator only). The numbering is the
// device protocol's.
type Fault uint8

// The faults; docs/fpga.md says how each shows to the host.
const (
	FaultReset      Fault = 1
	FaultDMATimeout Fault = 2
	FaultBitFlip    Fault = 3
	FaultDeviceLost Fault = 4
	FaultDMAStuck   Fault = 5
)

// Transport carries Device calls to a card. Implementations must be safe
// for concurrent use, honour ctx, verify the integrity of copies, and
// return *DeviceError values wrapping this package's sentinels.
type Transport interface {
	Info(ctx context.Context) (Info, error)
	LoadProgram(ctx context.Context, image []byte) (id uint32, err error)
	UnloadProgram(ctx context.Context, id uint32) error
	Alloc(ctx context.Context, size uint64) (addr uint64, err error)
	Free(ctx context.Context, addr uint64) error
	Write(ctx context.Context, addr uint64, data []byte) error
	Read(ctx context.Context, addr uint64, p []byte) error
	// Start runs a program `iterations` times with kernel arguments
	// R1..R7 = args (at most 7).
	Start(ctx context.Context, program uint32, iterations uint32, args []uint64) (run uint32, err error)
	// Wait blocks until the run finishes, the device-side deadline
	// (ctx's deadline, else a transport default) passes, or ctx ends.
	Wait(ctx context.Context, run uint32) (RunStats, error)
	Reset(ctx context.Context) error
	InjectFault(ctx context.Context, f Fault, after uint32) error
	Close() error
}

// Config holds options for Open. The zero value is valid.
type Config struct {
	// DialTimeout bounds connecting; 0 means 5s.
	DialTimeout time.Duration
	// WaitTimeout is the kernel wait deadline when ctx has none; 0 means 30s.
	WaitTimeout time.Duration
}

// Device is an open card. It is safe for concurrent use; the card runs
// one kernel at a time (a second Start fails with ErrBusy). The Unix
// transport serializes calls on one connection, so a Wait holds back
// other calls until it returns. Close releases the transport, not the
// card's buffers.
type Device struct {
	t   Transport
	log *slog.Logger
}

// NewDevice wraps a transport.
func NewDevice(t Transport, log *slog.Logger) *Device { return &Device{t: t, log: log} }

// Open connects to the device at target. Supported: "unix:/path/to/socket".
// It checks the connection with an Info call.
func Open(ctx context.Context, target string, cfg Config, log *slog.Logger) (*Device, error) {
	scheme, rest, ok := strings.Cut(target, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("open fpga device %q: want scheme:address, e.g. unix:/run/atelier/fpga.sock", target)
	}
	var t Transport
	switch scheme {
	case "unix":
		t = newUnixTransport(rest, cfg)
	default:
		return nil, fmt.Errorf("open fpga device %q: unknown transport %q (supported: unix)", target, scheme)
	}
	d := NewDevice(t, log)
	info, err := d.Info(ctx)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open fpga device %q: %w", target, err)
	}
	log.Info("fpga device opened", "target", target, "name", info.Name, "firmware", info.Firmware, "rows", info.Rows, "cols", info.Cols)
	return d, nil
}

// Close closes the transport.
func (d *Device) Close() error { return d.t.Close() }

// Info describes the card.
func (d *Device) Info(ctx context.Context) (Info, error) { return d.t.Info(ctx) }

// Program is a program loaded on the card.
type Program struct{ ID uint32 }

// LoadProgram sends a program image (package fpga/isa format).
func (d *Device) LoadProgram(ctx context.Context, image []byte) (Program, error) {
	id, err := d.t.LoadProgram(ctx, image)
	return Program{ID: id}, err
}

// UnloadProgram drops a program and its constants.
func (d *Device) UnloadProgram(ctx context.Context, p Program) error {
	return d.t.UnloadProgram(ctx, p.ID)
}

// Buffer is a device buffer: Size bytes of on-card memory at Addr.
type Buffer struct {
	Addr uint64
	Size uint64
}

// Alloc reserves a zeroed buffer.
func (d *Device) Alloc(ctx context.Context, size uint64) (Buffer, error) {
	a, err := d.t.Alloc(ctx, size)
	return Buffer{Addr: a, Size: size}, err
}

// Free releases a buffer.
func (d *Device) Free(ctx context.Context, b Buffer) error { return d.t.Free(ctx, b.Addr) }

// Write copies data to the buffer at offset off.
func (d *Device) Write(ctx context.Context, b Buffer, off uint64, data []byte) error {
	if off+uint64(len(data)) > b.Size {
		return &DeviceError{Op: "write", Detail: fmt.Sprintf("[%d, %d) outside the %d-byte buffer", off, off+uint64(len(data)), b.Size), Err: ErrBadAddress}
	}
	return d.t.Write(ctx, b.Addr+off, data)
}

// Read fills p from the buffer at offset off.
func (d *Device) Read(ctx context.Context, b Buffer, off uint64, p []byte) error {
	if off+uint64(len(p)) > b.Size {
		return &DeviceError{Op: "read", Detail: fmt.Sprintf("[%d, %d) outside the %d-byte buffer", off, off+uint64(len(p)), b.Size), Err: ErrBadAddress}
	}
	return d.t.Read(ctx, b.Addr+off, p)
}

// Run is a started kernel.
type Run struct{ ID uint32 }

// Start runs p `iterations` times with kernel arguments R1.. = args.
func (d *Device) Start(ctx context.Context, p Program, iterations int, args ...uint64) (Run, error) {
	if len(args) > 7 {
		return Run{}, &DeviceError{Op: "start", Detail: fmt.Sprintf("%d kernel arguments, at most 7", len(args)), Err: ErrProtocol}
	}
	if iterations < 1 || iterations > 1<<31 {
		return Run{}, &DeviceError{Op: "start", Detail: fmt.Sprintf("%d iterations, want >= 1", iterations), Err: ErrProtocol}
	}
	id, err := d.t.Start(ctx, p.ID, uint32(iterations), args)
	return Run{ID: id}, err
}

// Wait waits for a run; ctx's deadline is the device-side deadline.
func (d *Device) Wait(ctx context.Context, r Run) (RunStats, error) { return d.t.Wait(ctx, r.ID) }

// Execute is Start followed by Wait.
func (d *Device) Execute(ctx context.Context, p Program, iterations int, args ...uint64) (RunStats, error) {
	r, err := d.Start(ctx, p, iterations, args...)
	if err != nil {
		return RunStats{}, err
	}
	return d.Wait(ctx, r)
}

// MaxJobCopies bounds a Job's copies in each direction.
const MaxJobCopies = wire.MaxSubmitCopies

// Copy is one host↔device copy of a Job: Data is written to, or filled
// from, buffer Buf at offset Off.
type Copy struct {
	Buf  Buffer
	Off  uint64
	Data []byte
}

// Job is one inference as a single submission: write every Writes copy,
// run Program Iterations times with kernel arguments R1.. = Args, wait for
// it (ctx's deadline is the device-side deadline, as for Wait), then fill
// every Reads copy — what XRT does with buffer syncs and a run on one
// command queue. The Job and its slices are the caller's; a transport
// does not keep them after Submit returns.
type Job struct {
	Program    Program
	Iterations int
	Args       []uint64
	Writes     []Copy
	Reads      []Copy
}

// Submitter is an optional Transport method: Submit carries a whole Job
// in one exchange with the card, failing like the equivalent Write, Start,
// Wait and Read calls would (a *DeviceError whose Op names the step that
// failed: "write", "start", "wait" or "read"). Device checks the job
// first (copies inside their buffers, argument and copy counts).
// Transports without it get the calls one by one.
type Submitter interface {
	Submit(ctx context.Context, j *Job) (RunStats, error)
}

// Submit runs a job: copies in, the kernel, its wait and copies out, in
// one round trip when the transport and the card support it (the Unix
// transport does with a device of protocol revision 2) and as Write,
// Start, Wait and Read calls otherwise. Errors are those of the separate
// calls, from the first step that failed; Reads' Data is unspecified after
// an error. Safe for concurrent use like every Device method.
func (d *Device) Submit(ctx context.Context, j *Job) (RunStats, error) {
	if len(j.Args) > 7 {
		return RunStats{}, &DeviceError{Op: "start", Detail: fmt.Sprintf("%d kernel arguments, at most 7", len(j.Args)), Err: ErrProtocol}
	}
	if j.Iterations < 1 || j.Iterations > 1<<31 {
		return RunStats{}, &DeviceError{Op: "start", Detail: fmt.Sprintf("%d iterations, want >= 1", j.Iterations), Err: ErrProtocol}
	}
	if len(j.Writes) > MaxJobCopies || len(j.Reads) > MaxJobCopies {
		return RunStats{}, &DeviceError{Op: "submit", Detail: fmt.Sprintf("%d writes and %d reads, at most %d each", len(j.Writes), len(j.Reads), MaxJobCopies), Err: ErrProtocol}
	}
	for i, c := range j.Writes {
		if c.Off+uint64(len(c.Data)) > c.Buf.Size || c.Off+uint64(len(c.Data)) < c.Off {
			return RunStats{}, &DeviceError{Op: "write", Detail: fmt.Sprintf("job write %d: [%d, %d) outside the %d-byte buffer", i, c.Off, c.Off+uint64(len(c.Data)), c.Buf.Size), Err: ErrBadAddress}
		}
	}
	for i, c := range j.Reads {
		if c.Off+uint64(len(c.Data)) > c.Buf.Size || c.Off+uint64(len(c.Data)) < c.Off {
			return RunStats{}, &DeviceError{Op: "read", Detail: fmt.Sprintf("job read %d: [%d, %d) outside the %d-byte buffer", i, c.Off, c.Off+uint64(len(c.Data)), c.Buf.Size), Err: ErrBadAddress}
		}
	}
	if s, ok := d.t.(Submitter); ok {
		return s.Submit(ctx, j)
	}
	return submitSeparately(ctx, d.t, j)
}

// submitSeparately runs a checked job as separate transport calls.
func submitSeparately(ctx context.Context, t Transport, j *Job) (RunStats, error) {
	for _, c := range j.Writes {
		if err := t.Write(ctx, c.Buf.Addr+c.Off, c.Data); err != nil {
			return RunStats{}, err
		}
	}
	run, err := t.Start(ctx, j.Program.ID, uint32(j.Iterations), j.Args)
	if err != nil {
		return RunStats{}, err
	}
	st, err := t.Wait(ctx, run)
	if err != nil {
		return RunStats{}, err
	}
	for _, c := range j.Reads {
		if err := t.Read(ctx, c.Buf.Addr+c.Off, c.Data); err != nil {
			return RunStats{}, err
		}
	}
	return st, nil
}

// Reset resets the card: every program, buffer and run is gone.
func (d *Device) Reset(ctx context.Context) error {
	d.log.Warn("fpga device reset")
	return d.t.Reset(ctx)
}

// InjectFault arms a fault that fires after `after` further requests
// (emulator only; other transports return ErrUnsupported).
func (d *Device) InjectFault(ctx context.Context, f Fault, after uint32) error {
	return d.t.InjectFault(ctx, f, after)
}
