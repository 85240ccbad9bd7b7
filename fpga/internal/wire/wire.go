package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Version is the framing version carried in every frame header. It has
// not changed since the first protocol; what a device can do beyond the
// first protocol is negotiated with OpHello (see Revision).
const Version = 1

// Revision is the protocol revision this package speaks: 1 is the
// original eleven operations, 2 adds OpHello and OpSubmit. A peer that
// answers OpHello with StatusBadRequest speaks revision 1.
const Revision = 2

// Capability bits, exchanged by OpHello.
const (
	// CapSubmit: the device executes OpSubmit (copies in, kernel run,
	// wait, copies out in one request).
	CapSubmit uint32 = 1 << 0
)

// MaxSubmitCopies bounds the copies in each direction of one OpSubmit.
const MaxSubmitCopies = 16

// SubmitStep names the part of an OpSubmit request that failed; an error
// response to OpSubmit starts with the step (u8) and the index of the copy
// (u8, 0 for start and wait) before the message.
type SubmitStep uint8

// The steps.
const (
	StepRequest SubmitStep = iota // the request itself (malformed)
	StepWrite
	StepStart
	StepWait
	StepRead
)

var stepNames = [...]string{"submit", "write", "start", "wait", "read"}

func (s SubmitStep) String() string {
	if int(s) < len(stepNames) {
		return stepNames[s]
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}

// MaxFrame bounds a frame's length (payload plus 8 header bytes).
const MaxFrame = 256 << 20

// Op is a request type.
type Op uint8

// The operations.
const (
	OpInfo Op = iota + 1
	OpLoadProgram
	OpUnloadProgram
	OpAlloc
	OpFree
	OpWrite
	OpRead
	OpStart
	OpWait
	OpReset
	OpInject
	// OpHello negotiates the revision and capabilities (revision 2).
	OpHello
	// OpSubmit is a fused inference: copies to the device, a kernel run,
	// its wait and copies back, in one request (revision 2, CapSubmit).
	OpSubmit
	opMax
)

var opNames = [...]string{"", "info", "load_program", "unload_program", "alloc", "free", "write", "read", "start", "wait", "reset", "inject", "hello", "submit"}

func (o Op) String() string {
	if o > 0 && o < opMax {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Valid reports whether o is a known op.
func (o Op) Valid() bool { return o > 0 && o < opMax }

// Status is a response status. Error statuses carry a message payload.
type Status uint16

// The statuses.
const (
	StatusOK Status = iota
	StatusBadRequest
	StatusNotFound
	StatusNoMemory
	StatusBadAddress
	StatusIncompatible
	StatusMalformedProgram
	StatusTimeout
	StatusDMATimeout
	StatusReset
	StatusLost
	StatusBusy
	StatusExecFault
	StatusInternal
)

// Frame is one request or response.
type Frame struct {
	Op      Op
	Status  Status
	ID      uint32
	Payload []byte
}

// HeaderSize is the bytes of a frame before its payload.
const HeaderSize = 12

// BeginFrame appends a frame header for (op, status, id) to b; append the
// payload after it and finish with EndFrame. Building a frame this way in
// a reused buffer lets a sender write it with one call and no allocation.
func BeginFrame(b []byte, op Op, status Status, id uint32) []byte {
	b = append(b, 0, 0, 0, 0, Version, byte(op), 0, 0, 0, 0, 0, 0)
	h := b[len(b)-HeaderSize:]
	binary.LittleEndian.PutUint16(h[6:], uint16(status))
	binary.LittleEndian.PutUint32(h[8:], id)
	return b
}

// EndFrame sets the length of the frame that starts at frame[0] (built by
// BeginFrame and appends). It fails if the payload is too long.
func EndFrame(frame []byte) error {
	if len(frame) < HeaderSize {
		return fmt.Errorf("end frame: %d bytes, shorter than a header: %w", len(frame), ErrMalformed)
	}
	if len(frame)-HeaderSize > MaxFrame-8 {
		return fmt.Errorf("write frame: payload of %d bytes exceeds %d: %w", len(frame)-HeaderSize, MaxFrame-8, ErrMalformed)
	}
	binary.LittleEndian.PutUint32(frame, uint32(len(frame)-4))
	return nil
}

// SetStatus sets the status of the frame that starts at frame[0] (built
// by BeginFrame).
func SetStatus(frame []byte, s Status) { binary.LittleEndian.PutUint16(frame[6:], uint16(s)) }

// WriteFrame writes f in one Write call.
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxFrame-8 {
		return fmt.Errorf("write frame: payload of %d bytes exceeds %d: %w", len(f.Payload), MaxFrame-8, ErrMalformed)
	}
	b := BeginFrame(make([]byte, 0, HeaderSize+len(f.Payload)), f.Op, f.Status, f.ID)
	b = append(b, f.Payload...)
	if err := EndFrame(b); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ReadFrame reads one frame. io.EOF means the peer closed between frames.
func ReadFrame(r io.Reader) (Frame, error) { return ReadFrameBuf(r, nil) }

// ReadFrameBuf is ReadFrame that reads the payload into buf when it has
// the capacity (the returned Payload then aliases buf) and allocates
// otherwise. Callers pass a reused buffer and keep the returned Payload
// for the next call (Payload[:0]) to read without allocating.
func ReadFrameBuf(r io.Reader, buf []byte) (Frame, error) {
	if cap(buf) < HeaderSize {
		buf = make([]byte, HeaderSize, 512)
	}
	h := buf[:HeaderSize] // the header is decoded before the payload overwrites it
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return Frame{}, err
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n < 8 || n > MaxFrame {
		return Frame{}, fmt.Errorf("read frame: length %d, want 8..%d: %w", n, MaxFrame, ErrMalformed)
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		return Frame{}, fmt.Errorf("read frame header: %w", unexpected(err))
	}
	if h[4] != Version {
		// The rest of the header is laid out the same in every version
		// so far; the op and id let the receiver answer.
		return Frame{Op: Op(h[5]), ID: binary.LittleEndian.Uint32(h[8:])},
			fmt.Errorf("read frame: framing version %d, want %d: %w: %w", h[4], Version, ErrVersion, ErrMalformed)
	}
	f := Frame{Op: Op(h[5]), Status: Status(binary.LittleEndian.Uint16(h[6:])), ID: binary.LittleEndian.Uint32(h[8:])}
	if uint32(cap(buf)) >= n-8 {
		f.Payload = buf[:n-8]
	} else {
		f.Payload = make([]byte, n-8)
	}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return Frame{}, fmt.Errorf("read frame payload of %d bytes: %w", n-8, unexpected(err))
	}
	return f, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Enc builds a payload.
type Enc struct{ B []byte }

func (e *Enc) U8(v uint8)    { e.B = append(e.B, v) }
func (e *Enc) U32(v uint32)  { e.B = binary.LittleEndian.AppendUint32(e.B, v) }
func (e *Enc) U64(v uint64)  { e.B = binary.LittleEndian.AppendUint64(e.B, v) }
func (e *Enc) F64(v float64) { e.U64(math.Float64bits(v)) }

// Bytes writes a 4-byte length and the bytes.
func (e *Enc) Bytes(b []byte) { e.U32(uint32(len(b))); e.B = append(e.B, b...) }
func (e *Enc) Str(s string)   { e.Bytes([]byte(s)) }

// Raw appends b without a length (the rest of the payload).
func (e *Enc) Raw(b []byte) { e.B = append(e.B, b...) }

// Dec reads a payload; the first error sticks and later reads return zero.
type Dec struct {
	b   []byte
	off int
	err error
}

// NewDec returns a decoder over b.
func NewDec(b []byte) *Dec { return &Dec{b: b} }

func (d *Dec) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("%s at offset %d: need %d bytes, have %d: %w", what, d.off, n, len(d.b)-d.off, ErrMalformed)
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *Dec) U8(what string) uint8 {
	if s := d.take(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (d *Dec) U32(what string) uint32 {
	if s := d.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *Dec) U64(what string) uint64 {
	if s := d.take(8, what); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (d *Dec) F64(what string) float64 { return math.Float64frombits(d.U64(what)) }

// Bytes reads a length-prefixed byte string (sharing memory with the payload).
func (d *Dec) Bytes(what string) []byte {
	if d.err == nil && len(d.b)-d.off < 4 {
		d.take(4, what+" length") // sets the error
	}
	n := d.U32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%s at offset %d: length %d exceeds the %d bytes left: %w", what, d.off, n, len(d.b)-d.off, ErrMalformed)
		return nil
	}
	return d.take(int(n), what)
}

func (d *Dec) Str(what string) string { return string(d.Bytes(what)) }

// Fixed reads n bytes (sharing memory with the payload).
func (d *Dec) Fixed(n int, what string) []byte { return d.take(n, what) }

// Rest returns the remaining bytes.
func (d *Dec) Rest() []byte {
	if d.err != nil {
		return nil
	}
	s := d.b[d.off:]
	d.off = len(d.b)
	return s
}

// Err returns the first error so far.
func (d *Dec) Err() error { return d.err }

// Done returns the first error, or an error if bytes are left over.
func (d *Dec) Done() error {
	if d.err == nil && d.off != len(d.b) {
		d.err = fmt.Errorf("%d trailing bytes at offset %d: %w", len(d.b)-d.off, d.off, ErrMalformed)
	}
	return d.err
}

// Info is the device description returned by OpInfo.
type Info struct {
	Name             string
	Firmware         string // bitstream / firmware id
	Rows, Cols       uint32
	ClockHz          uint64
	DRAMBytes        uint64
	SPADBytes        uint32
	ACCWords         uint32
	DMABytesPerCycle uint32
	DMASetupCycles   uint32
	VectorLanes      uint32
	GatherBytes      uint32
}

// EncodeInfo encodes i.
func EncodeInfo(i Info) []byte {
	var e Enc
	e.Str(i.Name)
	e.Str(i.Firmware)
	e.U32(i.Rows)
	e.U32(i.Cols)
	e.U64(i.ClockHz)
	e.U64(i.DRAMBytes)
	e.U32(i.SPADBytes)
	e.U32(i.ACCWords)
	e.U32(i.DMABytesPerCycle)
	e.U32(i.DMASetupCycles)
	e.U32(i.VectorLanes)
	e.U32(i.GatherBytes)
	return e.B
}

// DecodeInfo decodes an OpInfo response.
func DecodeInfo(b []byte) (Info, error) {
	d := NewDec(b)
	i := Info{Name: d.Str("name"), Firmware: d.Str("firmware")}
	i.Rows, i.Cols = d.U32("rows"), d.U32("cols")
	i.ClockHz, i.DRAMBytes = d.U64("clock_hz"), d.U64("dram_bytes")
	i.SPADBytes, i.ACCWords = d.U32("spad_bytes"), d.U32("acc_words")
	i.DMABytesPerCycle, i.DMASetupCycles = d.U32("dma_bytes_per_cycle"), d.U32("dma_setup_cycles")
	i.VectorLanes, i.GatherBytes = d.U32("vector_lanes"), d.U32("gather_bytes")
	return i, d.Done()
}
