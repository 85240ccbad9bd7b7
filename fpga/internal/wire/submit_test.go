package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleSubmit() *Submit {
	return &Submit{Program: 3, Iterations: 2, Args: [7]uint64{1, 2, 3, 4, 5, 6, 7}, TimeoutMs: 1500,
		Writes: []Copy{{Addr: 4096, Len: 3, Data: []byte("abc")}, {Addr: 8192, Len: 0, Data: []byte{}}},
		Reads:  []Copy{{Addr: 12288, Len: 10}}}
}

func TestSubmitRoundTrip(t *testing.T) {
	in := sampleSubmit()
	var out Submit
	if err := DecodeSubmit(AppendSubmit(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("decoded %+v, want %+v", out, *in)
	}
	// Decoding again reuses the slices and forgets the old copies.
	if err := DecodeSubmit(AppendSubmit(nil, &Submit{Iterations: 1}), &out); err != nil || len(out.Writes) != 0 || len(out.Reads) != 0 {
		t.Fatalf("second decode: %+v, %v", out, err)
	}
}

func TestDecodeSubmitErrors(t *testing.T) {
	good := AppendSubmit(nil, sampleSubmit())
	huge := AppendSubmit(nil, &Submit{Reads: []Copy{{Len: MaxFrame - 20}}})
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"empty":           {nil, "submit: program at offset 0: need 4 bytes, have 0"},
		"no copy counts":  {good[:70-1], "submit: read count at offset 69: need 1 bytes, have 0"},
		"write cut":       {good[:70+8+4+1], "submit: write 0 of 2: data at offset 82: length 3 exceeds the 1 bytes left"},
		"read cut":        {good[:len(good)-1], "submit: read 0 of 1: length at offset"},
		"trailing":        {append(append([]byte(nil), good...), 0), "submit: 1 trailing bytes"},
		"too many writes": {func() []byte { b := bytes.Clone(good); b[68] = MaxSubmitCopies + 1; return b }(), "submit: 17 writes and 1 reads, at most 16 each"},
		"reads too large": {huge, "exceed the 268435448-byte frame limit"},
	}
	for name, c := range cases {
		var s Submit
		err := DecodeSubmit(c.b, &s)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrMalformed mentioning %q", name, err, c.want)
		}
	}
}

func TestHelloAndSubmitError(t *testing.T) {
	h := Hello{Revision: Revision, Capabilities: CapSubmit}
	if got, err := DecodeHello(AppendHello(nil, h)); err != nil || got != h {
		t.Fatalf("hello: %+v, %v", got, err)
	}
	if _, err := DecodeHello([]byte{2, 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short hello: %v", err)
	}
	step, i, msg, err := DecodeSubmitError(AppendSubmitError(nil, StepRead, 2, "dma timeout"))
	if err != nil || step != StepRead || i != 2 || msg != "dma timeout" || step.String() != "read" {
		t.Fatalf("submit error: %v %d %q %v", step, i, msg, err)
	}
	if _, _, _, err := DecodeSubmitError([]byte{byte(StepRead) + 1, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown step: %v", err)
	}
}

func TestFrameBufReuse(t *testing.T) {
	var buf bytes.Buffer
	b := BeginFrame(nil, OpSubmit, StatusOK, 9)
	b = append(b, "payload"...)
	if err := EndFrame(b); err != nil {
		t.Fatal(err)
	}
	buf.Write(b)
	SetStatus(b, StatusBusy)
	buf.Write(b)
	keep := make([]byte, 0, 64)
	f, err := ReadFrameBuf(&buf, keep)
	if err != nil || f.Op != OpSubmit || f.ID != 9 || string(f.Payload) != "payload" || &f.Payload[0] != &keep[:1][0] {
		t.Fatalf("first frame %+v, %v (payload should reuse the buffer)", f, err)
	}
	f, err = ReadFrameBuf(&buf, f.Payload[:0])
	if err != nil || f.Status != StatusBusy || string(f.Payload) != "payload" {
		t.Fatalf("second frame %+v, %v", f, err)
	}
}

func FuzzDecodeSubmit(f *testing.F) {
	f.Add(AppendSubmit(nil, sampleSubmit()))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Submit
		if DecodeSubmit(b, &s) != nil {
			return
		}
		if got := AppendSubmit(nil, &s); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, decoded from %x", got, b)
		}
	})
}
