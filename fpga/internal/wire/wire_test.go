package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Frame{Op: OpWrite, Status: StatusDMATimeout, ID: 77, Payload: []byte("hello")}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFrame(&buf)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("ReadFrame = %+v, %v", out, err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	cases := map[string][]byte{
		"short length": {4, 0, 0, 0, 1, 1, 0, 0},
		"huge length":  {0xff, 0xff, 0xff, 0xff},
		"bad version":  {8, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0},
		"truncated":    {20, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, b := range cases {
		if _, err := ReadFrame(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	f, err := ReadFrame(bytes.NewReader([]byte{8, 0, 0, 0, 2, byte(OpWait), 0, 0, 5, 0, 0, 0}))
	if !errors.Is(err, ErrVersion) || !errors.Is(err, ErrMalformed) || f.Op != OpWait || f.ID != 5 {
		t.Errorf("version-2 frame: %+v, %v; want ErrVersion and ErrMalformed with op and id", f, err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{9, 0, 0, 0, 2})); !errors.Is(err, ErrMalformed) && err == nil {
		t.Error("no error")
	}
}

func TestInfoRoundTrip(t *testing.T) {
	i := Info{Name: "x", Firmware: "fw", Rows: 32, Cols: 16, ClockHz: 3, DRAMBytes: 4, SPADBytes: 5, ACCWords: 6, DMABytesPerCycle: 7, DMASetupCycles: 8, VectorLanes: 9, GatherBytes: 10}
	got, err := DecodeInfo(EncodeInfo(i))
	if err != nil || got != i {
		t.Fatalf("DecodeInfo = %+v, %v", got, err)
	}
	if _, err := DecodeInfo(append(EncodeInfo(i), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, Frame{Op: OpInfo, ID: 1, Payload: EncodeInfo(Info{Name: "n"})})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bytes.NewReader(b))
		if err != nil {
			return
		}
		_, _ = DecodeInfo(fr.Payload)
		d := NewDec(fr.Payload)
		d.Bytes("x")
		d.U64("y")
		_ = d.Done()
		var out bytes.Buffer
		if err := WriteFrame(&out, fr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b[:out.Len()]) {
			t.Fatal("re-encoded frame differs")
		}
	})
}
