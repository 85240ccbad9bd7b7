package chunkwire

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

func TestAppendDataMatchesGeneratedCode(t *testing.T) {
	for _, tc := range []struct {
		corr, sha string
		index     uint32
		data      []byte
	}{
		{"c-1", "abc", 7, []byte("hello chunk")},
		{"", "", 0, nil},
		{"x", "y", 0, bytes.Repeat([]byte{0xa5}, 300_000)},
		{"corr", "", 1 << 31, []byte{0}},
	} {
		msg, off := AppendData([]byte("prefix"), tc.corr, tc.sha, tc.index, len(tc.data))
		msg = msg[len("prefix"):]
		off -= len("prefix")
		if len(tc.data) > 0 {
			copy(msg[off:], tc.data)
		}
		if got, want := len(msg), Size(tc.corr, tc.sha, tc.index, len(tc.data)); got != want {
			t.Fatalf("%q: message is %d bytes, Size says %d", tc.corr, got, want)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&agentv1.ChunkResponse{
			CorrelationId: tc.corr, Sha256: tc.sha, Index: tc.index, Data: tc.data})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg, want) {
			t.Fatalf("%q: AppendData differs from proto.Marshal:\n got %x\nwant %x", tc.corr, head(msg), head(want))
		}
		r, err := Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if r.CorrelationId != tc.corr || r.Sha256 != tc.sha || r.Index != tc.index || !bytes.Equal(r.Data, tc.data) {
			t.Fatalf("round trip: got %q %q %d %d bytes", r.CorrelationId, r.Sha256, r.Index, len(r.Data))
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 40)] }

func TestDecodeAliasesData(t *testing.T) {
	msg, off := AppendData(nil, "c", "s", 1, 4)
	copy(msg[off:], "abcd")
	r, err := Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg[off] = 'z'
	if string(r.Data) != "zbcd" {
		t.Fatalf("Data %q does not alias the message", r.Data)
	}
	if cap(r.Data) != 4 {
		t.Fatalf("Data has capacity %d beyond its length: an append would write into the message", cap(r.Data))
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated data", []byte{0x22, 0x05, 'a'}, "byte 1: field 4"},
		{"bad utf-8 id", []byte{0x0a, 0x01, 0xff}, "byte 2: field 1 is a string but not valid UTF-8"},
		{"bad tag", []byte{0x80}, "byte 0: bad field tag"},
		{"truncated index", []byte{0x18, 0x80}, "byte 1: index"},
		{"field number too large", []byte{0xf8, 0xff, 0xff, 0xff, 0x1f, 0x00}, "field number 1073741823 out of range"},
	} {
		_, err := Decode(tc.b)
		if !errors.Is(err, ErrMalformed) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%s: error %v, want ErrMalformed mentioning %q", tc.name, err, tc.want)
		}
		if perr := proto.Unmarshal(tc.b, &agentv1.ChunkResponse{}); perr == nil {
			t.Errorf("%s: proto.Unmarshal accepts what Decode refuses", tc.name)
		}
	}
}

// FuzzDecode holds Decode to proto.Unmarshal's answers.
func FuzzDecode(f *testing.F) {
	msg, off := AppendData(nil, "corr-1", "ab12", 3, 5)
	copy(msg[off:], "hello")
	f.Add(msg)
	f.Add([]byte{})
	f.Add([]byte{0x22, 0x05, 'a'})
	f.Add([]byte{0x0a, 0x01, 0xff})
	f.Add([]byte{0x18, 0x05, 0x18, 0x07, 0x2a, 0x01, 'e', 0x4a, 0x00})
	f.Add([]byte{0x20, 0x01}) // data (field 4) with the varint wire type
	f.Fuzz(func(t *testing.T, b []byte) {
		var want agentv1.ChunkResponse
		perr := proto.Unmarshal(b, &want)
		got, err := Decode(b)
		if (err == nil) != (perr == nil) {
			t.Fatalf("input %x: Decode error %v, proto.Unmarshal error %v", b, err, perr)
		}
		if err != nil {
			return
		}
		if got.CorrelationId != want.CorrelationId || got.Sha256 != want.Sha256 || got.Index != want.Index ||
			got.Error != want.Error || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("Decode %+v, proto.Unmarshal %+v", got, &want)
		}
	})
}
