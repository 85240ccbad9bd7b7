package fpga_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/internal/wire"
)

// card is an opened device with a copy program (16 bytes from R1 to R2)
// and an input and an output buffer.
type card struct {
	d       *fpga.Device
	p       fpga.Program
	in, out fpga.Buffer
}

func setupCard(t *testing.T, target string) *card {
	t.Helper()
	c := &card{d: open(t, target)}
	c.load(t)
	return c
}

// load (re)loads the program and buffers, after a reset for instance.
func (c *card) load(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var err error
	if c.p, err = c.d.LoadProgram(ctx, copyProgram(t, 32, 32, 16)); err != nil {
		t.Fatal(err)
	}
	if c.in, err = c.d.Alloc(ctx, 64); err != nil {
		t.Fatal(err)
	}
	if c.out, err = c.d.Alloc(ctx, 64); err != nil {
		t.Fatal(err)
	}
}

// separate is one inference as separate calls.
func (c *card) separate(ctx context.Context, data, res []byte) (fpga.RunStats, error) {
	if err := c.d.Write(ctx, c.in, 0, data); err != nil {
		return fpga.RunStats{}, err
	}
	st, err := c.d.Execute(ctx, c.p, 1, c.in.Addr, c.out.Addr)
	if err != nil {
		return st, err
	}
	return st, c.d.Read(ctx, c.out, 0, res)
}

// submit is one inference as one job.
func (c *card) submit(ctx context.Context, data, res []byte) (fpga.RunStats, error) {
	return c.d.Submit(ctx, &fpga.Job{Program: c.p, Iterations: 1, Args: []uint64{c.in.Addr, c.out.Addr},
		Writes: []fpga.Copy{{Buf: c.in, Data: data}}, Reads: []fpga.Copy{{Buf: c.out, Data: res}}})
}

// class names an error by its sentinel and the step that failed.
func class(err error) string {
	if err == nil {
		return "ok"
	}
	var de *fpga.DeviceError
	if !errors.As(err, &de) {
		return "not a DeviceError: " + err.Error()
	}
	return de.Op + ": " + de.Err.Error()
}

func TestSubmitMatchesSeparateCalls(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	c := setupCard(t, target)
	ctx := context.Background()
	data := []byte("0123456789abcdef")
	res1, res2 := make([]byte, 16), make([]byte, 16)
	st1, err := c.separate(ctx, data, res1)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := c.submit(ctx, bytes.ToUpper(data), res2)
	if err != nil {
		t.Fatal(err)
	}
	if string(res1) != string(data) || string(res2) != strings.ToUpper(string(data)) {
		t.Fatalf("results %q and %q, want the inputs back", res1, res2)
	}
	if st1.Cycles == 0 || st1 != st2 {
		t.Fatalf("stats: separate %+v, submit %+v; want the same non-zero cycles", st1, st2)
	}
	// Several copies each way, at offsets, in order.
	j := &fpga.Job{Program: c.p, Iterations: 1, Args: []uint64{c.in.Addr, c.out.Addr},
		Writes: []fpga.Copy{{Buf: c.in, Data: []byte("AAAAAAAA")}, {Buf: c.in, Off: 8, Data: []byte("BBBBBBBB")}, {Buf: c.in, Off: 4, Data: []byte("cc")}},
		Reads:  []fpga.Copy{{Buf: c.out, Off: 2, Data: make([]byte, 6)}, {Buf: c.in, Off: 12, Data: make([]byte, 4)}, {Buf: c.out, Data: nil}}}
	if _, err := c.d.Submit(ctx, j); err != nil {
		t.Fatal(err)
	}
	if got := string(j.Reads[0].Data) + "|" + string(j.Reads[1].Data); got != "AAccAA|BBBB" {
		t.Fatalf("reads %q, want AAccAA|BBBB", got)
	}
}

func TestSubmitChecksTheJob(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	c := setupCard(t, target)
	ctx := context.Background()
	many := make([]fpga.Copy, fpga.MaxJobCopies+1)
	for i := range many {
		many[i] = fpga.Copy{Buf: c.in, Data: []byte{1}}
	}
	cases := []struct {
		name string
		job  fpga.Job
		want string
	}{
		{"write outside its buffer", fpga.Job{Program: c.p, Iterations: 1, Writes: []fpga.Copy{{Buf: c.in, Off: 60, Data: make([]byte, 8)}}}, "write: fpga: bad device address"},
		{"read outside its buffer", fpga.Job{Program: c.p, Iterations: 1, Reads: []fpga.Copy{{Buf: c.out, Off: 1 << 63, Data: make([]byte, 1<<20)}}}, "read: fpga: bad device address"},
		{"too many copies", fpga.Job{Program: c.p, Iterations: 1, Writes: many}, "submit: fpga: protocol error"},
		{"too many args", fpga.Job{Program: c.p, Iterations: 1, Args: make([]uint64, 8)}, "start: fpga: protocol error"},
		{"no iterations", fpga.Job{Program: c.p}, "start: fpga: protocol error"},
		{"unknown program", fpga.Job{Program: fpga.Program{ID: 999}, Iterations: 1}, "start: fpga: no such handle"},
		{"device-side bad address", fpga.Job{Program: c.p, Iterations: 1, Writes: []fpga.Copy{{Buf: fpga.Buffer{Addr: c.in.Addr, Size: 1 << 30}, Off: 1 << 20, Data: []byte{1}}}}, "write: fpga: bad device address"},
		{"kernel reads unmapped memory", fpga.Job{Program: c.p, Iterations: 1, Args: []uint64{0, 0}}, "wait: fpga: bad device address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.d.Submit(ctx, &tc.job)
			if got := class(err); got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
		})
	}
	// The card is still usable.
	if _, err := c.submit(ctx, make([]byte, 16), make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
}

// TestSubmitFaultsAsSeparateCalls injects every fault at every step of an
// inference and checks that a submitted job fails exactly as the same
// separate calls do — the same sentinel from the same step — and leaves
// the card in the same state.
func TestSubmitFaultsAsSeparateCalls(t *testing.T) {
	cases := []struct {
		f     fpga.Fault
		after uint32
		first string // on write, start, wait or read
	}{
		{fpga.FaultReset, 0, "write: fpga: device reset"},
		{fpga.FaultReset, 1, "start: fpga: device reset"},
		{fpga.FaultReset, 2, "wait: fpga: device reset"},
		{fpga.FaultReset, 3, "read: fpga: device reset"},
		{fpga.FaultDMATimeout, 0, "write: fpga: dma failure"},
		{fpga.FaultDMATimeout, 1, "wait: fpga: timeout"}, // the kernel's DMA hangs
		{fpga.FaultDMATimeout, 2, "read: fpga: dma failure"},
		{fpga.FaultBitFlip, 0, "write: fpga: dma failure"},
		{fpga.FaultBitFlip, 1, "read: fpga: dma failure"},
		{fpga.FaultDeviceLost, 0, "write: fpga: device lost"},
		{fpga.FaultDeviceLost, 2, "wait: fpga: device lost"},
		{fpga.FaultDeviceLost, 3, "read: fpga: device lost"},
		{fpga.FaultDMAStuck, 0, "write: fpga: dma failure"},
	}
	data := []byte("0123456789abcdef")
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d after %d", tc.f, tc.after), func(t *testing.T) {
			var got [2][3]string
			for i, how := range []string{"separate", "submit"} {
				_, target, _ := serve(t, emu.Config{})
				c := setupCard(t, target)
				run := c.separate
				if how == "submit" {
					run = c.submit
				}
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				if err := c.d.InjectFault(ctx, tc.f, tc.after); err != nil {
					t.Fatal(err)
				}
				_, err := run(ctx, data, make([]byte, 16))
				cancel()
				got[i][0] = class(err)
				// The card after the fault: the next inference, then a
				// reset, a reload and one more.
				ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err = run(ctx, data, make([]byte, 16))
				cancel()
				got[i][1] = class(err)
				ctx = context.Background()
				if err := c.d.Reset(ctx); err != nil {
					got[i][2] = "reset " + class(err)
					continue
				}
				c.load(t)
				res := make([]byte, 16)
				ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err = run(ctx, data, res)
				cancel()
				got[i][2] = class(err)
				if err == nil && string(res) != string(data) {
					t.Errorf("%s: after recovery read %q, want %q", how, res, data)
				}
			}
			if got[0][0] != tc.first {
				t.Errorf("separate calls failed with %q, want %q", got[0][0], tc.first)
			}
			if got[0] != got[1] {
				t.Errorf("after the fault, separate calls: %q; submit: %q", got[0], got[1])
			}
		})
	}
}

// fakeDevice serves the device protocol with answer, for responses the
// emulator never sends.
func fakeDevice(t *testing.T, answer func(f wire.Frame) wire.Frame) string {
	t.Helper()
	return fakeDeviceConns(t, func() (func(wire.Frame) wire.Frame, func()) { return answer, func() {} })
}

// fakeDeviceConns is fakeDevice with a handler per connection: perConn
// returns the connection's answer function and what to do when it closes.
func fakeDeviceConns(t *testing.T, perConn func() (func(wire.Frame) wire.Frame, func())) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			answer, done := perConn()
			go func() {
				defer wg.Done()
				defer done()
				for {
					f, err := wire.ReadFrame(c)
					if err != nil {
						return
					}
					r := answer(f)
					r.Op, r.ID = f.Op, f.ID
					if wire.WriteFrame(c, r) != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "unix:" + sock
}

func TestSubmitMalformedResponses(t *testing.T) {
	okSubmit := func(reads ...[]byte) []byte {
		var e wire.Enc
		e.U64(100)
		e.U64(400)
		e.U32(0x12345678) // the write CRC: replaced below
		for _, r := range reads {
			e.U32(crc(r))
			e.Raw(r)
		}
		return e.B
	}
	in := []byte("abcd")
	withWriteCRC := func(p []byte) []byte { copy(p[16:], le32(crc(in))); return p }
	cases := []struct {
		name   string
		status wire.Status
		resp   []byte
		want   string // class
		detail string // in the message
	}{
		{"ok", wire.StatusOK, withWriteCRC(okSubmit([]byte("wxyz"))), "ok", ""},
		{"read data cut short", wire.StatusOK, withWriteCRC(okSubmit([]byte("wxyz")))[:26], "submit: fpga: protocol error", "read data at offset 24: need 4 bytes, have 2"},
		{"trailing bytes", wire.StatusOK, append(withWriteCRC(okSubmit([]byte("wxyz"))), 0), "submit: fpga: protocol error", "1 trailing bytes"},
		{"write crc mismatch", wire.StatusOK, okSubmit([]byte("wxyz")), "write: fpga: dma failure", "device stored crc 0x12345678"},
		{"read crc mismatch", wire.StatusOK, func() []byte { p := withWriteCRC(okSubmit([]byte("wxyz"))); p[len(p)-1] ^= 1; return p }(), "read: fpga: dma failure", "received crc"},
		{"error without a step", wire.StatusReset, []byte{2}, "submit: fpga: protocol error", "submit error of 1 bytes"},
		{"error of an unknown step", wire.StatusReset, []byte{9, 0, 'x'}, "submit: fpga: protocol error", "step 9"},
		{"error of a copy the job lacks", wire.StatusDMATimeout, []byte{byte(wire.StepRead), 3, 'x'}, "submit: fpga: protocol error", "read 3 of a job with 1 writes and 1 reads"},
		{"error from the device", wire.StatusDMATimeout, []byte{byte(wire.StepRead), 0, 'x'}, "read: fpga: dma failure", "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := fakeDevice(t, func(f wire.Frame) wire.Frame {
				switch f.Op {
				case wire.OpHello:
					return wire.Frame{Payload: wire.AppendHello(nil, wire.Hello{Revision: 2, Capabilities: wire.CapSubmit})}
				case wire.OpInfo:
					return wire.Frame{Payload: wire.EncodeInfo(wire.Info{Name: "fake", Rows: 32, Cols: 32})}
				case wire.OpSubmit:
					return wire.Frame{Status: tc.status, Payload: tc.resp}
				}
				return wire.Frame{Status: wire.StatusBadRequest, Payload: []byte("unexpected")}
			})
			d := open(t, target)
			buf := fpga.Buffer{Addr: 4096, Size: 64}
			out := make([]byte, 4)
			_, err := d.Submit(context.Background(), &fpga.Job{Program: fpga.Program{ID: 1}, Iterations: 1,
				Writes: []fpga.Copy{{Buf: buf, Data: in}}, Reads: []fpga.Copy{{Buf: buf, Data: out}}})
			if got := class(err); got != tc.want || (err != nil && !strings.Contains(err.Error(), tc.detail)) {
				t.Fatalf("got %v, want %q mentioning %q", err, tc.want, tc.detail)
			}
			if err == nil && string(out) != "wxyz" {
				t.Fatalf("read %q", out)
			}
		})
	}
}

func crc(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func TestHelloRefusesBadRevision(t *testing.T) {
	target := fakeDevice(t, func(f wire.Frame) wire.Frame {
		if f.Op == wire.OpHello {
			return wire.Frame{Payload: wire.AppendHello(nil, wire.Hello{Revision: 1})}
		}
		return wire.Frame{Payload: wire.EncodeInfo(wire.Info{Name: "fake"})}
	})
	_, err := fpga.Open(context.Background(), target, fpga.Config{}, quiet())
	if !errors.Is(err, fpga.ErrProtocol) || !strings.Contains(err.Error(), "protocol revision 1, want >= 2") {
		t.Fatalf("open: %v, want ErrProtocol naming the revision", err)
	}
}

// TestEmulatorRejectsMalformedSubmit sends the emulator requests the shim
// never sends and checks for a precise error that leaves the card intact.
func TestEmulatorRejectsMalformedSubmit(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	c := setupCard(t, target)
	conn, err := net.Dial("unix", strings.TrimPrefix(target, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := wire.AppendSubmit(nil, &wire.Submit{Program: c.p.ID, Iterations: 1, TimeoutMs: 1000, Args: [7]uint64{c.in.Addr, c.out.Addr},
		Writes: []wire.Copy{{Addr: c.in.Addr, Data: []byte("0123456789abcdef")}}, Reads: []wire.Copy{{Addr: c.out.Addr, Len: 16}}})
	tooMany := append([]byte(nil), good...)
	tooMany[4+4+56+4] = 17 // the write count
	cases := []struct {
		name    string
		op      wire.Op
		payload []byte
		status  wire.Status
		step    wire.SubmitStep
		want    string
	}{
		{"truncated write data", wire.OpSubmit, good[:len(good)-20], wire.StatusBadRequest, wire.StepRequest, "submit: write 0 of 1: data at offset 82: length 16 exceeds the 8 bytes left"},
		{"truncated read", wire.OpSubmit, good[:len(good)-2], wire.StatusBadRequest, wire.StepRequest, "submit: read 0 of 1: length at offset 106: need 4 bytes, have 2"},
		{"trailing bytes", wire.OpSubmit, append(append([]byte(nil), good...), 7), wire.StatusBadRequest, wire.StepRequest, "submit: 1 trailing bytes at offset 110"},
		{"too many copies", wire.OpSubmit, tooMany, wire.StatusBadRequest, wire.StepRequest, "submit: 17 writes and 1 reads, at most 16 each"},
		{"empty", wire.OpSubmit, nil, wire.StatusBadRequest, wire.StepRequest, "submit: program at offset 0: need 4 bytes, have 0"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := wire.WriteFrame(conn, wire.Frame{Op: tc.op, ID: uint32(i + 1), Payload: tc.payload}); err != nil {
				t.Fatal(err)
			}
			r, err := wire.ReadFrame(conn)
			if err != nil {
				t.Fatal(err)
			}
			step, _, msg, err := wire.DecodeSubmitError(r.Payload)
			if r.Status != tc.status || err != nil || step != tc.step || !strings.HasPrefix(msg, tc.want) {
				t.Fatalf("status %d, step %v, message %q (%v); want status %d, step %v, %q", r.Status, step, msg, err, tc.status, tc.step, tc.want)
			}
		})
	}
	// A hello from a revision that does not exist.
	if err := wire.WriteFrame(conn, wire.Frame{Op: wire.OpHello, ID: 99, Payload: wire.AppendHello(nil, wire.Hello{})}); err != nil {
		t.Fatal(err)
	}
	if r, err := wire.ReadFrame(conn); err != nil || r.Status != wire.StatusBadRequest || !strings.Contains(string(r.Payload), "protocol revision 0, this device speaks 1..2") {
		t.Fatalf("hello revision 0: %+v, %v", r, err)
	}
	// Nothing was written and the card still works.
	res := make([]byte, 16)
	if _, err := c.submit(context.Background(), []byte("fedcba9876543210"), res); err != nil || string(res) != "fedcba9876543210" {
		t.Fatalf("after malformed requests: %q, %v", res, err)
	}
}

// countingProxy passes requests to the emulator at target and counts
// them by op. With rev1 it stands for a device of protocol revision 1: it
// answers hello and submit as such a device does (unknown operation).
func countingProxy(t *testing.T, target string, rev1 bool) (string, func() map[wire.Op]int) {
	var mu sync.Mutex
	seen := map[wire.Op]int{}
	proxy := fakeDeviceConns(t, func() (func(wire.Frame) wire.Frame, func()) {
		up, err := net.Dial("unix", strings.TrimPrefix(target, "unix:"))
		if err != nil {
			return func(wire.Frame) wire.Frame {
				return wire.Frame{Status: wire.StatusLost, Payload: []byte(err.Error())}
			}, func() {}
		}
		return func(f wire.Frame) wire.Frame {
			if rev1 && (f.Op == wire.OpHello || f.Op == wire.OpSubmit) {
				return wire.Frame{Status: wire.StatusBadRequest, Payload: fmt.Appendf(nil, "op %d: unknown operation: malformed device protocol frame", f.Op)}
			}
			mu.Lock()
			seen[f.Op]++
			mu.Unlock()
			if err := wire.WriteFrame(up, f); err != nil {
				return wire.Frame{Status: wire.StatusInternal, Payload: []byte(err.Error())}
			}
			r, err := wire.ReadFrame(up)
			if err != nil {
				return wire.Frame{Status: wire.StatusInternal, Payload: []byte(err.Error())}
			}
			return r
		}, func() { up.Close() }
	})
	return proxy, func() map[wire.Op]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

func TestSubmitIsOneRequest(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	proxy, seen := countingProxy(t, target, false)
	c := setupCard(t, proxy)
	before := seen()
	res := make([]byte, 16)
	if _, err := c.submit(context.Background(), []byte("0123456789abcdef"), res); err != nil || string(res) != "0123456789abcdef" {
		t.Fatalf("submit: %q, %v", res, err)
	}
	after := seen()
	total := 0
	for op, n := range after {
		total += n - before[op]
	}
	if after[wire.OpHello] != 1 || after[wire.OpSubmit]-before[wire.OpSubmit] != 1 || total != 1 {
		t.Fatalf("requests before %v, after %v; want one hello per connection and one submit per job", before, after)
	}
}

func TestSubmitToRevision1Device(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	proxy, seen := countingProxy(t, target, true)
	c := setupCard(t, proxy)
	ctx := context.Background()
	before := seen()
	res := make([]byte, 16)
	if _, err := c.submit(ctx, []byte("0123456789abcdef"), res); err != nil || string(res) != "0123456789abcdef" {
		t.Fatalf("submit to a revision-1 device: %q, %v", res, err)
	}
	after := seen()
	for _, op := range []wire.Op{wire.OpWrite, wire.OpStart, wire.OpWait, wire.OpRead} {
		if after[op]-before[op] != 1 {
			t.Errorf("%s requests: %d, want 1 (the job as separate requests)", op, after[op]-before[op])
		}
	}
	// Faults show as from a revision-2 device.
	if err := c.d.InjectFault(ctx, fpga.FaultBitFlip, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.submit(ctx, []byte("0123456789abcdef"), res); class(err) != "read: fpga: dma failure" {
		t.Fatalf("bit flip on read through a revision-1 device: %v", err)
	}
}

// TestSubmitCanceled cancels a job whose kernel hangs: the call returns
// the context's error, and the next calls redial (and negotiate again) on
// a fresh connection.
func TestSubmitCanceled(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	proxy, seen := countingProxy(t, target, false)
	c := setupCard(t, proxy)
	if err := c.d.InjectFault(context.Background(), fpga.FaultDMATimeout, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the job is in the device: its start has been passed on.
		for seen()[wire.OpSubmit] < 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := c.submit(ctx, make([]byte, 16), make([]byte, 16)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled job: %v, want context.Canceled", err)
	}
	if err := c.d.Reset(context.Background()); err != nil {
		t.Fatalf("reset after a canceled job: %v", err)
	}
	c.load(t)
	res := make([]byte, 16)
	if _, err := c.submit(context.Background(), []byte("0123456789abcdef"), res); err != nil || string(res) != "0123456789abcdef" {
		t.Fatalf("after reconnecting: %q, %v", res, err)
	}
	if n := seen()[wire.OpHello]; n != 2 {
		t.Fatalf("%d hellos, want 2 (one per connection)", n)
	}
}

// TestFramingVersionRefused: each end names the framing version it got
// and the one it speaks, instead of hanging up silently or misreading.
func TestFramingVersionRefused(t *testing.T) {
	_, target, _ := serve(t, emu.Config{})
	conn, err := net.Dial("unix", strings.TrimPrefix(target, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A frame from a future host: length 8, version 2, op info, id 7.
	if _, err := conn.Write([]byte{8, 0, 0, 0, 2, byte(wire.OpInfo), 0, 0, 7, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	r, err := wire.ReadFrame(conn)
	if err != nil || r.Status != wire.StatusBadRequest || r.Op != wire.OpInfo || r.ID != 7 ||
		!strings.Contains(string(r.Payload), "framing version 2, want 1") || !strings.Contains(string(r.Payload), "protocol revisions 1..2") {
		t.Fatalf("answer to a version-2 frame: %+v %q, %v", r, r.Payload, err)
	}
	if _, err := wire.ReadFrame(conn); err == nil {
		t.Fatal("the device kept the connection after a frame it cannot parse")
	}

	// A device answering in another framing version.
	sock := filepath.Join(t.TempDir(), "future.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f, err := wire.ReadFrame(c)
		if err != nil {
			return
		}
		c.Write([]byte{8, 0, 0, 0, 3, byte(f.Op), 0, 0, byte(f.ID), 0, 0, 0})
		wire.ReadFrame(c) // until the shim hangs up
	}()
	_, err = fpga.Open(context.Background(), "unix:"+sock, fpga.Config{}, quiet())
	if !errors.Is(err, fpga.ErrProtocol) || !strings.Contains(err.Error(), "framing version 3, want 1") {
		t.Fatalf("open of a device answering in framing version 3: %v, want ErrProtocol naming the versions", err)
	}
}
