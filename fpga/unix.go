package fpga

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/fpga/internal/wire"
)

// unixTransport speaks the device protocol over one Unix-socket
// connection, one request at a time. A broken connection (I/O error,
// canceled call) is dropped and redialed on the next call.
type unixTransport struct {
	path string
	cfg  Config

	mu     sync.Mutex
	conn   net.Conn
	nextID uint32
	closed bool
}

var _ Transport = (*unixTransport)(nil)

func newUnixTransport(path string, cfg Config) *unixTransport {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 30 * time.Second
	}
	return &unixTransport{path: path, cfg: cfg}
}

func (t *unixTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.conn != nil {
		err := t.conn.Close()
		t.conn = nil
		return err
	}
	return nil
}

var statusErr = map[wire.Status]error{
	wire.StatusBadRequest:       ErrProtocol,
	wire.StatusNotFound:         ErrNotFound,
	wire.StatusNoMemory:         ErrNoMemory,
	wire.StatusBadAddress:       ErrBadAddress,
	wire.StatusIncompatible:     ErrIncompatible,
	wire.StatusMalformedProgram: ErrProgram,
	wire.StatusTimeout:          ErrTimeout,
	wire.StatusDMATimeout:       ErrDMA,
	wire.StatusReset:            ErrReset,
	wire.StatusLost:             ErrDeviceLost,
	wire.StatusBusy:             ErrBusy,
	wire.StatusExecFault:        ErrExec,
}

// call sends one request and returns the response payload. extra extends
// the I/O deadline beyond ctx's (for Wait, which blocks on the device).
func (t *unixTransport) call(ctx context.Context, op wire.Op, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, &DeviceError{Op: op.String(), Detail: "transport closed", Err: ErrDeviceLost}
	}
	if t.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
		var d net.Dialer
		c, err := d.DialContext(dctx, "unix", t.path)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("device unreachable: %v", err), Err: ErrDeviceLost}
		}
		t.conn = c
	}
	c := t.conn
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl.Add(2 * time.Second)) // the device answers a wait at its deadline; leave it time to say so
	} else {
		c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	t.nextID++
	id := t.nextID
	err := wire.WriteFrame(c, wire.Frame{Op: op, ID: id, Payload: payload})
	var resp wire.Frame
	if err == nil {
		resp, err = wire.ReadFrame(c)
	}
	if err != nil {
		c.Close()
		t.conn = nil
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("no answer: %v", err), Err: ErrTimeout}
		}
		if errors.Is(err, wire.ErrMalformed) {
			return nil, &DeviceError{Op: op.String(), Detail: err.Error(), Err: ErrProtocol}
		}
		return nil, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("connection failed: %v", err), Err: ErrDeviceLost}
	}
	if resp.ID != id || resp.Op != op {
		c.Close()
		t.conn = nil
		return nil, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("response to %s #%d, want %s #%d", resp.Op, resp.ID, op, id), Err: ErrProtocol}
	}
	if resp.Status != wire.StatusOK {
		sentinel := statusErr[resp.Status]
		if sentinel == nil {
			sentinel = ErrProtocol
		}
		return nil, &DeviceError{Op: op.String(), Detail: string(resp.Payload), Err: sentinel}
	}
	return resp.Payload, nil
}

func decodeErr(op wire.Op, err error) error {
	return &DeviceError{Op: op.String(), Detail: fmt.Sprintf("bad response: %v", err), Err: ErrProtocol}
}

func (t *unixTransport) Info(ctx context.Context) (Info, error) {
	b, err := t.call(ctx, wire.OpInfo, nil)
	if err != nil {
		return Info{}, err
	}
	w, err := wire.DecodeInfo(b)
	if err != nil {
		return Info{}, decodeErr(wire.OpInfo, err)
	}
	return Info{
		Name: w.Name, Firmware: w.Firmware, Rows: int(w.Rows), Cols: int(w.Cols), ClockHz: w.ClockHz,
		DRAMBytes: w.DRAMBytes, SPADBytes: int(w.SPADBytes), ACCWords: int(w.ACCWords),
		DMABytesPerCycle: int(w.DMABytesPerCycle), DMASetupCycles: int(w.DMASetupCycles),
		VectorLanes: int(w.VectorLanes), GatherBytes: int(w.GatherBytes),
	}, nil
}

func (t *unixTransport) LoadProgram(ctx context.Context, image []byte) (uint32, error) {
	b, err := t.call(ctx, wire.OpLoadProgram, image)
	if err != nil {
		return 0, err
	}
	d := wire.NewDec(b)
	id := d.U32("program")
	d.U64("const_base")
	if err := d.Done(); err != nil {
		return 0, decodeErr(wire.OpLoadProgram, err)
	}
	return id, nil
}

func (t *unixTransport) UnloadProgram(ctx context.Context, id uint32) error {
	var e wire.Enc
	e.U32(id)
	_, err := t.call(ctx, wire.OpUnloadProgram, e.B)
	return err
}

func (t *unixTransport) Alloc(ctx context.Context, size uint64) (uint64, error) {
	var e wire.Enc
	e.U64(size)
	b, err := t.call(ctx, wire.OpAlloc, e.B)
	if err != nil {
		return 0, err
	}
	d := wire.NewDec(b)
	a := d.U64("addr")
	if err := d.Done(); err != nil {
		return 0, decodeErr(wire.OpAlloc, err)
	}
	return a, nil
}

func (t *unixTransport) Free(ctx context.Context, addr uint64) error {
	var e wire.Enc
	e.U64(addr)
	_, err := t.call(ctx, wire.OpFree, e.B)
	return err
}

func (t *unixTransport) Write(ctx context.Context, addr uint64, data []byte) error {
	e := wire.Enc{B: make([]byte, 0, 8+len(data))}
	e.U64(addr)
	e.Raw(data)
	b, err := t.call(ctx, wire.OpWrite, e.B)
	if err != nil {
		return err
	}
	d := wire.NewDec(b)
	sum := d.U32("crc")
	if err := d.Done(); err != nil {
		return decodeErr(wire.OpWrite, err)
	}
	if want := crc32.ChecksumIEEE(data); sum != want {
		return &DeviceError{Op: "write", Detail: fmt.Sprintf("%d bytes at %#x: device stored crc %#08x, sent %#08x", len(data), addr, sum, want), Err: ErrDMA}
	}
	return nil
}

func (t *unixTransport) Read(ctx context.Context, addr uint64, p []byte) error {
	var e wire.Enc
	e.U64(addr)
	e.U32(uint32(len(p)))
	b, err := t.call(ctx, wire.OpRead, e.B)
	if err != nil {
		return err
	}
	d := wire.NewDec(b)
	sum := d.U32("crc")
	data := d.Rest()
	if err := d.Done(); err != nil {
		return decodeErr(wire.OpRead, err)
	}
	if len(data) != len(p) {
		return decodeErr(wire.OpRead, fmt.Errorf("%d bytes, asked for %d", len(data), len(p)))
	}
	if got := crc32.ChecksumIEEE(data); got != sum {
		return &DeviceError{Op: "read", Detail: fmt.Sprintf("%d bytes at %#x: received crc %#08x, device sent %#08x", len(p), addr, got, sum), Err: ErrDMA}
	}
	copy(p, data)
	return nil
}

func (t *unixTransport) Start(ctx context.Context, program, iterations uint32, args []uint64) (uint32, error) {
	var e wire.Enc
	e.U32(program)
	e.U32(iterations)
	for i := 0; i < 7; i++ {
		var v uint64
		if i < len(args) {
			v = args[i]
		}
		e.U64(v)
	}
	b, err := t.call(ctx, wire.OpStart, e.B)
	if err != nil {
		return 0, err
	}
	d := wire.NewDec(b)
	id := d.U32("run")
	if err := d.Done(); err != nil {
		return 0, decodeErr(wire.OpStart, err)
	}
	return id, nil
}

func (t *unixTransport) Wait(ctx context.Context, run uint32) (RunStats, error) {
	timeout := t.cfg.WaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	ms := max(timeout.Milliseconds(), 1)
	var e wire.Enc
	e.U32(run)
	e.U32(uint32(min(ms, 1<<31)))
	b, err := t.call(ctx, wire.OpWait, e.B)
	if errors.Is(err, context.DeadlineExceeded) {
		// The device answers at the same deadline; whichever side noticed
		// first, the kernel did not finish in time.
		return RunStats{}, &DeviceError{Op: "wait", Detail: fmt.Sprintf("run %d not finished after %v", run, timeout), Err: ErrTimeout}
	}
	if err != nil {
		return RunStats{}, err
	}
	d := wire.NewDec(b)
	s := RunStats{Cycles: d.U64("cycles"), DeviceTime: time.Duration(d.U64("device_ns"))}
	if err := d.Done(); err != nil {
		return RunStats{}, decodeErr(wire.OpWait, err)
	}
	return s, nil
}

func (t *unixTransport) Reset(ctx context.Context) error {
	_, err := t.call(ctx, wire.OpReset, nil)
	return err
}

func (t *unixTransport) InjectFault(ctx context.Context, f Fault, after uint32) error {
	var e wire.Enc
	e.U8(uint8(f))
	e.U32(after)
	_, err := t.call(ctx, wire.OpInject, e.B)
	return err
}
