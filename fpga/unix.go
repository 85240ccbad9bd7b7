package fpga

import (
	"bufio"
	"bytes"
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
// canceled call) is dropped and redialed on the next call. Each new
// connection starts with OpHello; a device that does not know it (protocol
// revision 1) gets no OpSubmit: Submit then sends the job's requests one
// by one.
//
// Frames are built in and read into buffers kept across calls (under mu),
// written with one Write and read through a bufio.Reader, so a request
// costs one write and, usually, one read system call.
type unixTransport struct {
	path string
	cfg  Config

	mu     sync.Mutex
	conn   net.Conn
	br     *bufio.Reader
	caps   uint32 // negotiated with the device on this connection
	nextID uint32
	closed bool
	wbuf   []byte
	rbuf   []byte
	sub    wire.Submit
}

var (
	_ Transport = (*unixTransport)(nil)
	_ Submitter = (*unixTransport)(nil)
)

// bufKeep bounds the frame buffers kept between calls.
const bufKeep = 1 << 20

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
		t.drop()
		return err
	}
	return nil
}

// drop forgets the connection (closing it); mu held.
func (t *unixTransport) drop() {
	if t.conn != nil {
		t.conn.Close()
	}
	t.conn, t.br, t.caps = nil, nil, 0
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

func sentinelOf(s wire.Status) error {
	if e := statusErr[s]; e != nil {
		return e
	}
	return ErrProtocol
}

// connect dials and negotiates if there is no connection; mu held.
func (t *unixTransport) connect(ctx context.Context, op wire.Op) error {
	if t.closed {
		return &DeviceError{Op: op.String(), Detail: "transport closed", Err: ErrDeviceLost}
	}
	if t.conn != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	var d net.Dialer
	c, err := d.DialContext(dctx, "unix", t.path)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &DeviceError{Op: op.String(), Detail: fmt.Sprintf("device unreachable: %v", err), Err: ErrDeviceLost}
	}
	t.conn, t.br = c, bufio.NewReaderSize(c, 64<<10)
	resp, err := t.exchange(ctx, wire.OpHello, func(b []byte) []byte {
		return wire.AppendHello(b, wire.Hello{Revision: wire.Revision, Capabilities: wire.CapSubmit})
	})
	if err != nil {
		return err // exchange dropped the connection
	}
	switch resp.Status {
	case wire.StatusOK:
		h, err := wire.DecodeHello(resp.Payload)
		if err == nil && h.Revision < 2 {
			err = fmt.Errorf("device answers hello with protocol revision %d, want >= 2", h.Revision)
		}
		if err != nil {
			t.drop()
			return &DeviceError{Op: "hello", Detail: err.Error(), Err: ErrProtocol}
		}
		t.caps = h.Capabilities & wire.CapSubmit
	case wire.StatusBadRequest:
		t.caps = 0 // revision 1: no hello, no fused submit; the connection stays usable
	default:
		t.drop()
		return &DeviceError{Op: "hello", Detail: string(resp.Payload), Err: sentinelOf(resp.Status)}
	}
	return nil
}

// exchange sends one request whose payload build appends to a frame
// buffer, and reads the response into the transport's read buffer (valid
// until the next exchange). mu held and connected. I/O failures drop the
// connection and come back as *DeviceError (or ctx's error); an error
// status is for the caller to interpret.
func (t *unixTransport) exchange(ctx context.Context, op wire.Op, build func([]byte) []byte) (wire.Frame, error) {
	c := t.conn
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl.Add(2 * time.Second)) // the device answers a wait at its deadline; leave it time to say so
	} else {
		c.SetDeadline(time.Time{})
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	t.nextID++
	id := t.nextID
	b := wire.BeginFrame(t.wbuf[:0], op, wire.StatusOK, id)
	if build != nil {
		b = build(b)
	}
	err := wire.EndFrame(b)
	if err == nil {
		_, err = c.Write(b)
	}
	if cap(b) <= bufKeep {
		t.wbuf = b[:0]
	}
	var resp wire.Frame
	if err == nil {
		resp, err = wire.ReadFrameBuf(t.br, t.rbuf)
		if err == nil && cap(resp.Payload) <= bufKeep {
			t.rbuf = resp.Payload[:0]
		}
	}
	if err != nil {
		t.drop()
		if ctx.Err() != nil {
			return wire.Frame{}, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return wire.Frame{}, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("no answer: %v", err), Err: ErrTimeout}
		}
		if errors.Is(err, wire.ErrMalformed) {
			return wire.Frame{}, &DeviceError{Op: op.String(), Detail: err.Error(), Err: ErrProtocol}
		}
		return wire.Frame{}, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("connection failed: %v", err), Err: ErrDeviceLost}
	}
	if resp.ID != id || resp.Op != op {
		t.drop()
		return wire.Frame{}, &DeviceError{Op: op.String(), Detail: fmt.Sprintf("response to %s #%d, want %s #%d", resp.Op, resp.ID, op, id), Err: ErrProtocol}
	}
	return resp, nil
}

// call sends one request and returns a copy of the response payload.
func (t *unixTransport) call(ctx context.Context, op wire.Op, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.connect(ctx, op); err != nil {
		return nil, err
	}
	resp, err := t.exchange(ctx, op, func(b []byte) []byte { return append(b, payload...) })
	if err != nil {
		return nil, err
	}
	if resp.Status != wire.StatusOK {
		return nil, &DeviceError{Op: op.String(), Detail: string(resp.Payload), Err: sentinelOf(resp.Status)}
	}
	return bytes.Clone(resp.Payload), nil
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
	timeout, ms := t.waitTimeout(ctx)
	var e wire.Enc
	e.U32(run)
	e.U32(ms)
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

// waitTimeout is the device-side wait deadline for ctx.
func (t *unixTransport) waitTimeout(ctx context.Context) (time.Duration, uint32) {
	timeout := t.cfg.WaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return timeout, uint32(min(max(timeout.Milliseconds(), 1), 1<<31))
}

// Submit sends the whole job as one OpSubmit when the device negotiated
// CapSubmit, and as separate requests otherwise.
func (t *unixTransport) Submit(ctx context.Context, j *Job) (RunStats, error) {
	timeout, ms := t.waitTimeout(ctx)
	timedOut := func() error {
		return &DeviceError{Op: "wait", Detail: fmt.Sprintf("job of program %d not finished after %v", j.Program.ID, timeout), Err: ErrTimeout}
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return RunStats{}, timedOut()
		}
		return RunStats{}, err
	}
	t.mu.Lock()
	if err := t.connect(ctx, wire.OpSubmit); err != nil {
		t.mu.Unlock()
		if errors.Is(err, context.DeadlineExceeded) {
			return RunStats{}, timedOut()
		}
		return RunStats{}, err
	}
	if t.caps&wire.CapSubmit == 0 {
		t.mu.Unlock()
		return submitSeparately(ctx, t, j)
	}
	defer t.mu.Unlock()
	s := &t.sub
	*s = wire.Submit{Program: j.Program.ID, Iterations: uint32(j.Iterations), TimeoutMs: ms, Writes: s.Writes[:0], Reads: s.Reads[:0]}
	copy(s.Args[:], j.Args)
	for _, c := range j.Writes {
		s.Writes = append(s.Writes, wire.Copy{Addr: c.Buf.Addr + c.Off, Len: uint32(len(c.Data)), Data: c.Data})
	}
	for _, c := range j.Reads {
		s.Reads = append(s.Reads, wire.Copy{Addr: c.Buf.Addr + c.Off, Len: uint32(len(c.Data))})
	}
	resp, err := t.exchange(ctx, wire.OpSubmit, func(b []byte) []byte { return wire.AppendSubmit(b, s) })
	for i := range s.Writes {
		s.Writes[i].Data = nil // do not keep the caller's memory
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return RunStats{}, timedOut()
	}
	if err != nil {
		return RunStats{}, err
	}
	if resp.Status != wire.StatusOK {
		step, i, msg, derr := wire.DecodeSubmitError(resp.Payload)
		if derr != nil {
			return RunStats{}, decodeErr(wire.OpSubmit, derr)
		}
		if (step == wire.StepWrite && i >= len(j.Writes)) || (step == wire.StepRead && i >= len(j.Reads)) {
			return RunStats{}, decodeErr(wire.OpSubmit, fmt.Errorf("error for %s %d of a job with %d writes and %d reads: %s", step, i, len(j.Writes), len(j.Reads), msg))
		}
		return RunStats{}, &DeviceError{Op: step.String(), Detail: msg, Err: sentinelOf(resp.Status)}
	}
	d := wire.NewDec(resp.Payload)
	st := RunStats{Cycles: d.U64("cycles"), DeviceTime: time.Duration(d.U64("device_ns"))}
	for i, c := range j.Writes {
		sum := d.U32("write crc")
		if d.Err() != nil {
			break
		}
		if want := crc32.ChecksumIEEE(c.Data); sum != want {
			return RunStats{}, &DeviceError{Op: "write", Detail: fmt.Sprintf("submit write %d: %d bytes at %#x: device stored crc %#08x, sent %#08x", i, len(c.Data), c.Buf.Addr+c.Off, sum, want), Err: ErrDMA}
		}
	}
	for i, c := range j.Reads {
		sum := d.U32("read crc")
		data := d.Fixed(len(c.Data), "read data")
		if d.Err() != nil {
			break
		}
		if got := crc32.ChecksumIEEE(data); got != sum {
			return RunStats{}, &DeviceError{Op: "read", Detail: fmt.Sprintf("submit read %d: %d bytes at %#x: received crc %#08x, device sent %#08x", i, len(c.Data), c.Buf.Addr+c.Off, got, sum), Err: ErrDMA}
		}
		copy(c.Data, data)
	}
	if err := d.Done(); err != nil {
		return RunStats{}, decodeErr(wire.OpSubmit, err)
	}
	return st, nil
}
