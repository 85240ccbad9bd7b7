package emu

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/fpga/internal/wire"
	"github.com/atelier-ml/atelier/fpga/isa"
)

// MaxWait bounds the deadline a client may ask OpWait for.
const MaxWait = 10 * time.Minute

// Serve accepts connections on l and answers device-protocol requests
// against one emulated card built from cfg, until ctx is done. It closes l
// and every connection before returning; it returns nil after ctx ends and
// the listener error otherwise. Requests on one connection are handled in
// order; several connections share the card.
func Serve(ctx context.Context, l net.Listener, cfg Config, log *slog.Logger) error {
	dev, err := NewDevice(cfg)
	if err != nil {
		return err
	}
	defer dev.Reset() // releases a run hung by an injected DMA timeout
	return ServeDevice(ctx, l, dev, log)
}

// ServeDevice is Serve for an existing Device (tests use it to inject
// faults directly).
func ServeDevice(ctx context.Context, l net.Listener, dev *Device, log *slog.Logger) error {
	info := dev.Info()
	log.Info("fpga emulator serving", "addr", l.Addr().String(), "name", info.Name, "rows", info.Rows, "cols", info.Cols, "clock_hz", info.ClockHz)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	closeAll := func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fpga emulator accept: %w", err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			serveConn(c, dev, log)
		}()
	}
}

// ListenUnix listens on a Unix socket at path. A stale socket file left by
// a process that died is removed; a socket something still answers on, or
// a path that is not a socket, is an error.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return l, nil
}

// connBufMax bounds the request and response buffers a connection keeps
// between requests; a larger frame (a program image, a big copy) gets
// buffers of its own that are dropped afterwards.
const connBufMax = 1 << 20

func serveConn(c net.Conn, dev *Device, log *slog.Logger) {
	// One buffered read per request in the common case and one write per
	// response, both into buffers reused across requests.
	br := bufio.NewReaderSize(c, 64<<10)
	var rbuf, wbuf []byte
	var sc scratch
	for {
		f, err := wire.ReadFrameBuf(br, rbuf)
		if errors.Is(err, wire.ErrVersion) {
			// Say why before hanging up: the rest of the stream cannot be
			// parsed.
			msg := fmt.Sprintf("%v; this device speaks framing version %d, protocol revisions 1..%d", err, wire.Version, wire.Revision)
			_ = wire.WriteFrame(c, wire.Frame{Op: f.Op, ID: f.ID, Status: wire.StatusBadRequest, Payload: []byte(msg)})
			log.Warn("fpga emulator: dropping connection", "err", err)
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Warn("fpga emulator: dropping connection", "err", err)
			}
			return
		}
		if cap(f.Payload) <= connBufMax {
			rbuf = f.Payload[:0]
		}
		b := wire.BeginFrame(wbuf[:0], f.Op, wire.StatusOK, f.ID)
		status, b := handleInto(dev, f, b, &sc)
		wire.SetStatus(b, status)
		if status != wire.StatusOK {
			log.Debug("fpga emulator request failed", "op", f.Op.String(), "id", f.ID, "status", status, "err", string(b[wire.HeaderSize:]))
		}
		if err := wire.EndFrame(b); err != nil {
			log.Warn("fpga emulator: write response", "err", err)
			return
		}
		if _, err := c.Write(b); err != nil {
			log.Warn("fpga emulator: write response", "err", err)
			return
		}
		if cap(b) <= connBufMax {
			wbuf = b[:0]
		}
	}
}

// statusOf maps a device error to a protocol status.
func statusOf(err error) wire.Status {
	switch {
	case errors.Is(err, wire.ErrMalformed):
		return wire.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return wire.StatusNotFound
	case errors.Is(err, ErrNoMemory):
		return wire.StatusNoMemory
	case errors.Is(err, ErrBadAddress):
		return wire.StatusBadAddress
	case errors.Is(err, ErrIncompatible):
		return wire.StatusIncompatible
	case errors.Is(err, isa.ErrMalformed), errors.Is(err, isa.ErrVersion), errors.Is(err, isa.ErrBounds):
		return wire.StatusMalformedProgram
	case errors.Is(err, ErrWaitTimeout):
		return wire.StatusTimeout
	case errors.Is(err, ErrDMATimeout):
		return wire.StatusDMATimeout
	case errors.Is(err, ErrReset):
		return wire.StatusReset
	case errors.Is(err, ErrDeviceLost):
		return wire.StatusLost
	case errors.Is(err, ErrBusy):
		return wire.StatusBusy
	case errors.Is(err, ErrIllegal):
		return wire.StatusExecFault
	}
	return wire.StatusInternal
}

// scratch is per-connection state reused across requests.
type scratch struct {
	submit wire.Submit
}

// handle answers one request; the response's Op and ID are left to the
// caller.
func handle(dev *Device, f wire.Frame) wire.Frame {
	status, b := handleInto(dev, f, nil, &scratch{})
	return wire.Frame{Status: status, Payload: b}
}

// handleInto appends the response payload for f to out and returns the
// status; on failure the payload is the error message (for OpSubmit
// prefixed by the failed step, see wire.AppendSubmitError).
func handleInto(dev *Device, f wire.Frame, out []byte, sc *scratch) (wire.Status, []byte) {
	switch f.Op {
	case wire.OpSubmit:
		return submit(dev, f.Payload, out, sc)
	case wire.OpHello:
		h, err := wire.DecodeHello(f.Payload)
		if err == nil && h.Revision < 1 {
			err = fmt.Errorf("hello: protocol revision %d, this device speaks 1..%d: %w", h.Revision, wire.Revision, wire.ErrMalformed)
		}
		if err != nil {
			return wire.StatusBadRequest, append(out, fmt.Sprintf("hello: %v", err)...)
		}
		return wire.StatusOK, wire.AppendHello(out, wire.Hello{Revision: wire.Revision, Capabilities: wire.CapSubmit})
	}
	resp := handleOne(dev, f)
	return resp.Status, append(out, resp.Payload...)
}

// submit executes an OpSubmit: the same device requests a host would send
// one by one (each write, start, wait, each read), so fault injection
// counts and fires exactly as for separate requests. It stops at the first
// failure and reports its step.
func submit(dev *Device, p []byte, out []byte, sc *scratch) (wire.Status, []byte) {
	base := len(out)
	head := out // what precedes the payload (a frame header); out grows below
	failAt := func(step wire.SubmitStep, i int, err error) (wire.Status, []byte) {
		return statusOf(err), wire.AppendSubmitError(head[:base], step, i, err.Error())
	}
	s := &sc.submit
	if err := wire.DecodeSubmit(p, s); err != nil {
		return failAt(wire.StepRequest, 0, err)
	}
	out = append(out, make([]byte, 16)...) // cycles and device ns, filled after the wait
	for i, w := range s.Writes {
		sum, err := dev.Write(w.Addr, w.Data)
		if err != nil {
			return failAt(wire.StepWrite, i, err)
		}
		out = binary.LittleEndian.AppendUint32(out, sum)
	}
	rid, err := dev.Start(s.Program, s.Iterations, s.Args)
	if err != nil {
		return failAt(wire.StepStart, 0, err)
	}
	cycles, err := dev.Wait(rid, min(time.Duration(s.TimeoutMs)*time.Millisecond, MaxWait))
	if err != nil {
		return failAt(wire.StepWait, 0, err)
	}
	binary.LittleEndian.PutUint64(out[base:], cycles)
	binary.LittleEndian.PutUint64(out[base+8:], uint64(dev.DeviceTime(cycles)))
	for i, r := range s.Reads {
		at := len(out)
		out = append(out, 0, 0, 0, 0)
		var sum uint32
		if out, sum, err = dev.readAppend(out, r.Addr, int(r.Len)); err != nil {
			return failAt(wire.StepRead, i, err)
		}
		binary.LittleEndian.PutUint32(out[at:], sum)
	}
	return wire.StatusOK, out
}

func fail(err error) wire.Frame {
	return wire.Frame{Status: statusOf(err), Payload: []byte(err.Error())}
}

func handleOne(dev *Device, f wire.Frame) wire.Frame {
	d := wire.NewDec(f.Payload)
	var e wire.Enc
	var err error
	switch f.Op {
	case wire.OpInfo:
		if err = d.Done(); err == nil {
			dev.mu.Lock()
			_, err = dev.begin()
			dev.mu.Unlock()
			e.Raw(wire.EncodeInfo(dev.Info()))
		}
	case wire.OpLoadProgram:
		img := d.Rest()
		if err = d.Done(); err == nil {
			var id uint32
			var base uint64
			id, base, err = dev.LoadProgram(img)
			e.U32(id)
			e.U64(base)
		}
	case wire.OpUnloadProgram:
		id := d.U32("program")
		if err = d.Done(); err == nil {
			err = dev.UnloadProgram(id)
		}
	case wire.OpAlloc:
		size := d.U64("size")
		if err = d.Done(); err == nil {
			var addr uint64
			addr, err = dev.Alloc(size)
			e.U64(addr)
		}
	case wire.OpFree:
		addr := d.U64("addr")
		if err = d.Done(); err == nil {
			err = dev.Free(addr)
		}
	case wire.OpWrite:
		addr := d.U64("addr")
		data := d.Rest()
		if err = d.Done(); err == nil {
			var sum uint32
			sum, err = dev.Write(addr, data)
			e.U32(sum)
		}
	case wire.OpRead:
		addr, n := d.U64("addr"), d.U32("length")
		if err = d.Done(); err == nil {
			if n > wire.MaxFrame-64 {
				err = fmt.Errorf("read of %d bytes exceeds the frame limit: %w", n, wire.ErrMalformed)
				break
			}
			var data []byte
			var sum uint32
			data, sum, err = dev.Read(addr, int(n))
			e.U32(sum)
			e.Raw(data)
		}
	case wire.OpStart:
		id, iters := d.U32("program"), d.U32("iterations")
		var args [isa.NumRegs - 1]uint64
		for i := range args {
			args[i] = d.U64(fmt.Sprintf("arg r%d", i+1))
		}
		if err = d.Done(); err == nil {
			var rid uint32
			rid, err = dev.Start(id, iters, args)
			e.U32(rid)
		}
	case wire.OpWait:
		id, ms := d.U32("run"), d.U32("timeout_ms")
		if err = d.Done(); err == nil {
			timeout := min(time.Duration(ms)*time.Millisecond, MaxWait)
			var cycles uint64
			cycles, err = dev.Wait(id, timeout)
			e.U64(cycles)
			e.U64(uint64(dev.DeviceTime(cycles)))
		}
	case wire.OpReset:
		if err = d.Done(); err == nil {
			err = dev.Reset()
		}
	case wire.OpInject:
		kind, after := d.U8("fault"), d.U32("after")
		if err = d.Done(); err == nil {
			err = dev.Inject(Fault(kind), after)
		}
	default:
		err = fmt.Errorf("op %d: unknown operation: %w", f.Op, wire.ErrMalformed)
	}
	if err != nil {
		return fail(err)
	}
	return wire.Frame{Payload: e.B}
}
