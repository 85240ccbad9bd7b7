package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// segMagic opens every segment file; the last byte is the format version.
const segMagic = "ATSPOOL\x01"

// headerSize is the size of a record header:
//
//	[0:4]   crc32c (Castagnoli) of bytes [4:24] and the payload
//	[4:8]   payload length, uint32
//	[8:16]  sequence number, uint64
//	[16:24] append time, Unix nanoseconds, int64
//
// All integers are little-endian. The payload follows the header.
const headerSize = 24

// MaxPayload is the largest payload Append accepts (4 MiB). Recovery treats a
// header announcing a longer payload as corruption, so a damaged length field
// never makes Open allocate unbounded memory.
const MaxPayload = 4 << 20

// maxSeq bounds sequence numbers read from disk, so arithmetic on them
// cannot overflow; at a million batches a second it lasts 146,000 years.
const maxSeq = 1 << 62

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends the framed record to dst.
func appendFrame(dst []byte, seq uint64, unixNano int64, payload []byte) []byte {
	start := len(dst)
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	binary.LittleEndian.PutUint64(h[16:24], uint64(unixNano))
	dst = append(dst, h[:]...)
	dst = append(dst, payload...)
	crc := crc32.Update(0, castagnoli, dst[start+4:])
	binary.LittleEndian.PutUint32(dst[start:start+4], crc)
	return dst
}

// frameCRCOK reports whether frame (header and payload) carries a valid CRC.
func frameCRCOK(frame []byte) bool {
	return binary.LittleEndian.Uint32(frame[0:4]) == crc32.Update(0, castagnoli, frame[4:])
}

// recIdx locates one record inside its segment file.
type recIdx struct {
	seq uint64
	off int64  // offset of the header in the file
	n   uint32 // payload length
	ts  int64  // append time, Unix nanoseconds
}

func (r recIdx) size() int64 { return headerSize + int64(r.n) }

// scanResult is what scanSegment found in one segment file's bytes.
type scanResult struct {
	recs []recIdx
	// validEnd is the offset just past the last good record (or past the
	// magic); bytes beyond it are damaged.
	validEnd int64
	// damage describes why scanning stopped early; "" when the whole file
	// was well formed.
	damage string
	// torn is true when the damage is an incomplete record at the end of
	// the file, the normal leftover of a crash during an append.
	torn bool
}

// scanSegment parses a segment file. Records must carry a valid CRC and
// strictly increasing sequence numbers greater than after; scanning stops at
// the first record that does not. It never panics on any input.
func scanSegment(data []byte, after uint64) scanResult {
	var res scanResult
	if len(data) < len(segMagic) {
		res.damage = fmt.Sprintf("file shorter than the %d-byte segment magic", len(segMagic))
		res.torn = true
		return res
	}
	if string(data[:len(segMagic)]) != segMagic {
		res.damage = fmt.Sprintf("bad segment magic %q, expected %q", data[:len(segMagic)], segMagic)
		return res
	}
	off := int64(len(segMagic))
	res.validEnd = off
	prev := after
	for off < int64(len(data)) {
		rest := int64(len(data)) - off
		if rest < headerSize {
			res.damage = fmt.Sprintf("offset %d: %d trailing bytes, shorter than a %d-byte record header", off, rest, headerSize)
			res.torn = true
			return res
		}
		h := data[off : off+headerSize]
		n := binary.LittleEndian.Uint32(h[4:8])
		if n > MaxPayload {
			res.damage = fmt.Sprintf("offset %d: payload length %d exceeds the maximum %d", off, n, MaxPayload)
			return res
		}
		if rest < headerSize+int64(n) {
			res.damage = fmt.Sprintf("offset %d: record of %d bytes runs past the end of the file (%d bytes left)", off, headerSize+int64(n), rest)
			res.torn = true
			return res
		}
		frame := data[off : off+headerSize+int64(n)]
		if !frameCRCOK(frame) {
			res.damage = fmt.Sprintf("offset %d: crc32c mismatch", off)
			return res
		}
		seq := binary.LittleEndian.Uint64(h[8:16])
		if seq <= prev || seq > maxSeq {
			res.damage = fmt.Sprintf("offset %d: sequence %d does not follow %d (or exceeds %d)", off, seq, prev, uint64(maxSeq))
			return res
		}
		prev = seq
		res.recs = append(res.recs, recIdx{seq: seq, off: off, n: n, ts: int64(binary.LittleEndian.Uint64(h[16:24]))})
		off += int64(len(frame))
		res.validEnd = off
	}
	return res
}

// segName is the file name of the segment whose first record has sequence
// first: 20 zero-padded decimal digits, so names sort in sequence order.
func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

// parseSegName returns the first sequence encoded in a segment file name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil && v >= 1 && v <= maxSeq
}

// stateFile holds the consumer cursor, the sequence high-water mark and the
// drop counter: one line, "atelier-spool/1 next=N acked=N dropped=N\n".
const stateFile = "state"

type state struct {
	next    uint64 // next sequence to assign; never decreases
	acked   uint64 // every sequence <= acked is delivered or dropped
	dropped uint64 // batches dropped by limits or damage, all time
}

func (s state) encode() []byte {
	return fmt.Appendf(nil, "atelier-spool/1 next=%d acked=%d dropped=%d\n", s.next, s.acked, s.dropped)
}

func parseState(b []byte) (state, error) {
	var s state
	line, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return s, fmt.Errorf("%w: missing final newline", ErrBadState)
	}
	f := strings.Split(line, " ")
	if len(f) != 4 || f[0] != "atelier-spool/1" {
		return s, fmt.Errorf("%w: %q: expected \"atelier-spool/1 next=N acked=N dropped=N\"", ErrBadState, line)
	}
	dst := []*uint64{&s.next, &s.acked, &s.dropped}
	for i, key := range []string{"next=", "acked=", "dropped="} {
		v, ok := strings.CutPrefix(f[i+1], key)
		if !ok {
			return s, fmt.Errorf("%w: field %d is %q, expected %sN", ErrBadState, i+1, f[i+1], key)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("%w: %s%s: %w", ErrBadState, key, v, err)
		}
		*dst[i] = n
	}
	if s.next == 0 || s.acked >= s.next || s.next > maxSeq+1 {
		return s, fmt.Errorf("%w: acked=%d must be below next=%d (1 <= next <= 2^62+1)", ErrBadState, s.acked, s.next)
	}
	return s, nil
}
