package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzRecover writes arbitrary bytes as a segment file and opens the spool:
// Open must not fail or panic, and every record it yields must be a
// CRC-valid frame present in the input, in increasing order.
func FuzzRecover(f *testing.F) {
	valid := []byte(segMagic)
	for i := uint64(1); i <= 3; i++ {
		valid = appendFrame(valid, i, int64(i)*1e9, payload(i))
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte(segMagic))
	f.Add([]byte{})
	f.Add([]byte("not a segment at all"))
	bad := bytes.Clone(valid)
	bad[len(segMagic)+headerSize+3] ^= 0x40
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir, MaxAge: 1 << 62, Clock: func() time.Time { return time.Unix(0, -1<<62) }}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		recs, err := s.Peek(1 << 20)
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		pos := len(segMagic)
		var prev uint64
		for _, r := range recs {
			if r.Seq <= prev {
				t.Fatalf("seq %d after %d", r.Seq, prev)
			}
			prev = r.Seq
			frame := appendFrame(nil, r.Seq, r.Time.UnixNano(), r.Payload)
			if !frameCRCOK(frame) || pos+len(frame) > len(data) || !bytes.Equal(data[pos:pos+len(frame)], frame) {
				t.Fatalf("record %d is not the frame at offset %d of the input", r.Seq, pos)
			}
			pos += len(frame)
		}
		seq, err := s.Append([]byte("after"))
		if err != nil || seq <= prev {
			t.Fatalf("Append after recovery = %d, %v; want above %d", seq, err, prev)
		}
	})
}

// FuzzScanSegment is the fast, in-memory half of FuzzRecover: the parser
// alone, with no file system, so it explores far more inputs per second.
func FuzzScanSegment(f *testing.F) {
	valid := []byte(segMagic)
	for i := uint64(1); i <= 3; i++ {
		valid = appendFrame(valid, i, int64(i), payload(i))
	}
	f.Add(valid, uint64(0))
	f.Add(valid[:len(valid)-1], uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, after uint64) {
		res := scanSegment(data, after)
		if res.validEnd > int64(len(data)) || (res.damage == "") != (res.validEnd == int64(len(data))) && len(data) >= len(segMagic) {
			t.Fatalf("validEnd %d of %d, damage %q", res.validEnd, len(data), res.damage)
		}
		off, prev := int64(len(segMagic)), after
		for _, r := range res.recs {
			if r.off != off || r.seq <= prev || !frameCRCOK(data[r.off:r.off+r.size()]) {
				t.Fatalf("bad record %+v at expected offset %d after seq %d", r, off, prev)
			}
			off, prev = off+r.size(), r.seq
		}
		if len(res.recs) > 0 && off != res.validEnd {
			t.Fatalf("records end at %d, validEnd %d", off, res.validEnd)
		}
	})
}
