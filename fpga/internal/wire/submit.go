package wire

import "fmt"

// Hello is the payload of OpHello in both directions: the sender's
// protocol revision and the capabilities it offers (device) or wants
// (host).
type Hello struct {
	Revision     uint32
	Capabilities uint32
}

// AppendHello appends h's encoding to b.
func AppendHello(b []byte, h Hello) []byte {
	e := Enc{B: b}
	e.U32(h.Revision)
	e.U32(h.Capabilities)
	return e.B
}

// DecodeHello decodes an OpHello payload.
func DecodeHello(p []byte) (Hello, error) {
	d := NewDec(p)
	h := Hello{Revision: d.U32("revision"), Capabilities: d.U32("capabilities")}
	return h, d.Done()
}

// Copy is one host↔device copy of an OpSubmit: Data goes to device
// address Addr (a write), or Len bytes come back from Addr (a read; Data
// unused).
type Copy struct {
	Addr uint64
	Len  uint32
	Data []byte
}

// Submit is an OpSubmit request: write every Writes entry, start Program
// for Iterations with R1..R7 = Args, wait up to TimeoutMs, then read every
// Reads entry. The response payload is u64 cycles, u64 device ns, a u32
// CRC-32 per write (of the bytes as stored) and, per read, a u32 CRC-32 of
// the stored bytes followed by the Len bytes.
type Submit struct {
	Program    uint32
	Iterations uint32
	Args       [7]uint64
	TimeoutMs  uint32
	Writes     []Copy
	Reads      []Copy
}

// AppendSubmit appends s's encoding to b: u32 program, u32 iterations,
// 7 × u64 args, u32 timeout ms, u8 writes, u8 reads, per write u64 addr,
// u32 length and the bytes, per read u64 addr and u32 length.
func AppendSubmit(b []byte, s *Submit) []byte {
	e := Enc{B: b}
	e.U32(s.Program)
	e.U32(s.Iterations)
	for _, a := range s.Args {
		e.U64(a)
	}
	e.U32(s.TimeoutMs)
	e.U8(uint8(len(s.Writes)))
	e.U8(uint8(len(s.Reads)))
	for _, w := range s.Writes {
		e.U64(w.Addr)
		e.Bytes(w.Data)
	}
	for _, r := range s.Reads {
		e.U64(r.Addr)
		e.U32(r.Len)
	}
	return e.B
}

// DecodeSubmit decodes an OpSubmit request into s, reusing its slices;
// write data aliases p. It checks the copy counts (at most
// MaxSubmitCopies each) and that the reads fit in one response frame.
func DecodeSubmit(p []byte, s *Submit) error {
	d := NewDec(p)
	s.Program, s.Iterations = d.U32("program"), d.U32("iterations")
	for i := range s.Args {
		s.Args[i] = d.U64(argNames[i])
	}
	s.TimeoutMs = d.U32("timeout_ms")
	nw, nr := int(d.U8("write count")), int(d.U8("read count"))
	if d.err == nil && (nw > MaxSubmitCopies || nr > MaxSubmitCopies) {
		return fmt.Errorf("submit: %d writes and %d reads, at most %d each: %w", nw, nr, MaxSubmitCopies, ErrMalformed)
	}
	s.Writes, s.Reads = s.Writes[:0], s.Reads[:0]
	for i := 0; i < nw && d.err == nil; i++ {
		addr := d.U64("address")
		data := d.Bytes("data")
		if d.err != nil {
			return fmt.Errorf("submit: write %d of %d: %w", i, nw, d.err)
		}
		s.Writes = append(s.Writes, Copy{Addr: addr, Len: uint32(len(data)), Data: data})
	}
	total := uint64(16 + 4*nw)
	for i := 0; i < nr && d.err == nil; i++ {
		addr := d.U64("address")
		n := d.U32("length")
		if d.err != nil {
			return fmt.Errorf("submit: read %d of %d: %w", i, nr, d.err)
		}
		total += 4 + uint64(n)
		s.Reads = append(s.Reads, Copy{Addr: addr, Len: n})
	}
	if err := d.Done(); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if total > MaxFrame-8 {
		return fmt.Errorf("submit: reads of %d bytes in all exceed the %d-byte frame limit: %w", total, MaxFrame-8, ErrMalformed)
	}
	return nil
}

var argNames = [7]string{"arg r1", "arg r2", "arg r3", "arg r4", "arg r5", "arg r6", "arg r7"}

// AppendSubmitError appends the payload of an OpSubmit error response:
// the failed step, the copy index and the message.
func AppendSubmitError(b []byte, step SubmitStep, index int, msg string) []byte {
	b = append(b, byte(step), byte(index))
	return append(b, msg...)
}

// DecodeSubmitError decodes an OpSubmit error payload.
func DecodeSubmitError(p []byte) (step SubmitStep, index int, msg string, err error) {
	if len(p) < 2 {
		return 0, 0, "", fmt.Errorf("submit error of %d bytes, want step, index and message: %w", len(p), ErrMalformed)
	}
	if SubmitStep(p[0]) > StepRead {
		return 0, 0, "", fmt.Errorf("submit error: step %d, want 0..%d: %w", p[0], StepRead, ErrMalformed)
	}
	return SubmitStep(p[0]), int(p[1]), string(p[2:]), nil
}
