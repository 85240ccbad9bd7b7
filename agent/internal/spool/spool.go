package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/agent/internal/fsutil"
)

// Defaults for the zero Config fields.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultMaxAge       = 24 * time.Hour
	DefaultSegmentBytes = 1 << 20
)

// Config configures a Spool. Zero fields take the defaults above.
type Config struct {
	// Dir is the spool's directory, created if missing. Required. The spool
	// owns every *.seg file and the "state" file in it.
	Dir string
	// MaxBytes bounds the total size of the segment files on disk.
	MaxBytes int64
	// MaxAge bounds how long an undelivered record is kept.
	MaxAge time.Duration
	// SegmentBytes is the size at which a segment is closed and a new one
	// started. A record larger than it gets a segment of its own.
	SegmentBytes int64
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, fmt.Errorf("%w: Dir is empty", ErrInvalidConfig)
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = min(DefaultSegmentBytes, c.MaxBytes)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	minBytes := int64(len(segMagic) + headerSize)
	switch {
	case c.MaxBytes < minBytes:
		return c, fmt.Errorf("%w: MaxBytes is %d, expected at least %d", ErrInvalidConfig, c.MaxBytes, minBytes)
	case c.MaxAge < 0:
		return c, fmt.Errorf("%w: MaxAge is %v, expected a positive duration", ErrInvalidConfig, c.MaxAge)
	case c.SegmentBytes < minBytes || c.SegmentBytes > c.MaxBytes:
		return c, fmt.Errorf("%w: SegmentBytes is %d, expected between %d and MaxBytes (%d)", ErrInvalidConfig, c.SegmentBytes, minBytes, c.MaxBytes)
	}
	return c, nil
}

// Record is one spooled batch.
type Record struct {
	// Seq is the batch's sequence number, unique per spool directory.
	Seq uint64
	// Time is when the batch was appended (Config.Clock).
	Time time.Time
	// Payload is the batch, owned by the caller.
	Payload []byte
}

// Stats is a snapshot of the spool.
type Stats struct {
	// Pending is the number of records not yet acknowledged.
	Pending int
	// PendingBytes is the payload bytes of the pending records.
	PendingBytes int64
	// DiskBytes is the size of the segment files (what MaxBytes bounds).
	DiskBytes int64
	// Dropped counts batches dropped by the size and age limits or lost to
	// on-disk damage, over the spool directory's whole life.
	Dropped uint64
	// NextSeq is the sequence number the next Append will assign.
	NextSeq uint64
}

type segment struct {
	first uint64 // from the file name
	path  string
	size  int64
	recs  []recIdx
}

// last is the highest sequence in the segment, or first-1 when empty.
func (g *segment) last() uint64 {
	if len(g.recs) == 0 {
		return g.first - 1
	}
	return g.recs[len(g.recs)-1].seq
}

// Spool is a bounded, durable FIFO of telemetry batches. All methods are
// safe for concurrent use; they serialize on one mutex, so a Peek waits for
// an Append's fsync. The intended use is one producer (Append) and one
// consumer (Peek, then Ack after the hub confirmed).
type Spool struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	segs   []*segment // oldest first
	cur    *os.File   // open for appending to segs[len(segs)-1], or nil
	st     state
	disk   int64 // sum of segment sizes
	buf    []byte
}

// Open opens or creates the spool in cfg.Dir and recovers it: every segment
// is scanned and each record's CRC verified; a segment is cut at its first
// damaged record (an incomplete record at the end is the normal trace of a
// crash during an append), the loss logged and counted in Stats.Dropped.
// Segments whose records are all acknowledged are deleted. New appends
// always go to a new segment. The caller must Close the spool.
func Open(cfg Config, log *slog.Logger) (*Spool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &Spool{cfg: cfg, log: log.With("spool", cfg.Dir), st: state{next: 1}}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open spool: %w", err)
	default:
		if s.st, err = parseState(b); err != nil {
			return nil, fmt.Errorf("open spool: %s: %w", filepath.Join(cfg.Dir, stateFile), err)
		}
	}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	return s, nil
}

func (s *Spool) recover() error {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	type file struct {
		first uint64
		name  string
	}
	var files []file
	for _, e := range ents {
		if first, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			files = append(files, file{first, e.Name()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].first < files[j].first })
	startNext := s.st.next
	dirty := false
	var truncate []*segment
	var remove []string
	prev := uint64(0)
	for _, f := range files {
		path := filepath.Join(s.cfg.Dir, f.name)
		s.st.next = max(s.st.next, f.first)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		res := scanSegment(data, max(prev, f.first-1))
		if res.damage != "" {
			// Each lost record took at least headerSize bytes: skipping
			// that many sequence numbers guarantees none is reused.
			lostBytes := int64(len(data)) - res.validEnd
			skip := uint64((lostBytes + headerSize - 1) / headerSize)
			after := max(prev, f.first-1)
			if len(res.recs) > 0 {
				after = res.recs[len(res.recs)-1].seq
			}
			s.st.next = max(s.st.next, after+1+skip)
			if !res.torn {
				// A mid-file corruption loses acknowledged appends: count
				// them (at least one) unless they were already delivered.
				if after >= s.st.acked {
					s.st.dropped += estimateLost(res.recs, lostBytes)
				}
			}
			lvl := slog.LevelWarn
			if res.torn {
				lvl = slog.LevelInfo
			}
			s.log.Log(context.Background(), lvl, "spool segment damaged, truncating", "file", f.name, "reason", res.damage,
				"torn_tail", res.torn, "kept_records", len(res.recs), "lost_bytes", lostBytes)
			dirty = true
		}
		if len(res.recs) == 0 || res.recs[len(res.recs)-1].seq <= s.st.acked {
			remove = append(remove, path)
			if len(res.recs) > 0 {
				prev = res.recs[len(res.recs)-1].seq
			}
			continue
		}
		g := &segment{first: f.first, path: path, size: res.validEnd, recs: res.recs}
		if res.validEnd < int64(len(data)) {
			truncate = append(truncate, g)
		}
		prev = res.recs[len(res.recs)-1].seq
		s.segs = append(s.segs, g)
		s.disk += res.validEnd
	}
	s.st.next = max(s.st.next, prev+1, s.st.acked+1)
	// The state (high-water mark past lost records, drop count) is durable
	// before the damaged bytes are cut away.
	if dirty || s.st.next != startNext {
		if err := s.writeState(); err != nil {
			return err
		}
	}
	for _, g := range truncate {
		if err := truncateSync(g.path, g.size); err != nil {
			return err
		}
	}
	for _, path := range remove {
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}

// estimateLost estimates how many records lostBytes held, from the mean size
// of the records kept before the damage (at least 1): the exact number is
// unknowable once a length field is damaged.
func estimateLost(kept []recIdx, lostBytes int64) uint64 {
	if len(kept) == 0 {
		return 1
	}
	var sum int64
	for _, r := range kept {
		sum += r.size()
	}
	mean := sum / int64(len(kept))
	return uint64(max(1, (lostBytes+mean-1)/mean))
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

func (s *Spool) writeState() error {
	if err := fsutil.WriteFile(filepath.Join(s.cfg.Dir, stateFile), s.st.encode(), 0o600); err != nil {
		return fmt.Errorf("spool state: %w", err)
	}
	return nil
}

// Append spools one batch and returns its sequence number. It returns only
// after the record is fsynced: an acknowledged append survives a crash or
// power loss. To stay within MaxBytes it first drops the oldest segments,
// counting their undelivered records in Stats.Dropped.
func (s *Spool) Append(payload []byte) (uint64, error) {
	first, _, err := s.AppendBatch([][]byte{payload})
	return first, err
}

// AppendBatch spools several batches with one fsync per segment touched and
// returns the first and last sequence numbers assigned (consecutive). On
// error the call is not acknowledged, but batches of it written to earlier
// segments before the failure (a call spanning segments) may still be
// delivered; in this process their sequence numbers are not reused. A call holding more than MaxBytes drops its own oldest
// batches under the drop-oldest rule. An empty call returns (0, 0, nil).
func (s *Spool) AppendBatch(payloads [][]byte) (first, last uint64, err error) {
	if len(payloads) == 0 {
		return 0, 0, nil
	}
	for i, p := range payloads {
		if len(p) > MaxPayload || int64(len(segMagic)+headerSize+len(p)) > s.cfg.MaxBytes {
			return 0, 0, fmt.Errorf("spool append: payload %d: %d bytes: %w (limit %d, MaxBytes %d)",
				i, len(p), ErrTooLarge, MaxPayload, s.cfg.MaxBytes)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, ErrClosed
	}
	if err := s.expireLocked(); err != nil {
		return 0, 0, fmt.Errorf("spool append: %w", err)
	}
	first = s.st.next
	now := s.cfg.Clock().UnixNano()
	i := 0
	for i < len(payloads) {
		need := int64(headerSize + len(payloads[i]))
		if s.cur != nil {
			if g := s.segs[len(s.segs)-1]; g.size+need > s.cfg.SegmentBytes && len(g.recs) > 0 {
				if err := s.cur.Close(); err != nil {
					return 0, 0, fmt.Errorf("spool append: %w", err)
				}
				s.cur = nil
			}
		}
		extra := need
		if s.cur == nil {
			extra += int64(len(segMagic))
		}
		// Dropping may remove the current segment too (s.cur becomes nil).
		if err := s.makeRoomLocked(extra); err != nil {
			return 0, 0, fmt.Errorf("spool append: %w", err)
		}
		if s.cur == nil {
			if err := s.rotateLocked(); err != nil {
				return 0, 0, fmt.Errorf("spool append: %w", err)
			}
		}
		seg := s.segs[len(s.segs)-1]
		s.buf = s.buf[:0]
		var recs []recIdx
		size := seg.size
		for i < len(payloads) {
			p := payloads[i]
			need := int64(headerSize + len(p))
			if len(recs) > 0 && (size+need > s.cfg.SegmentBytes || s.disk+(size-seg.size)+need > s.cfg.MaxBytes) {
				break
			}
			seq := s.st.next
			s.st.next++
			recs = append(recs, recIdx{seq: seq, off: size, n: uint32(len(p)), ts: now})
			s.buf = appendFrame(s.buf, seq, now, p)
			size += need
			i++
		}
		if err := s.writeLocked(seg, recs); err != nil {
			return 0, 0, fmt.Errorf("spool append: %w", err)
		}
	}
	return first, s.st.next - 1, nil
}

// writeLocked writes s.buf (the frames of recs) to the current segment and
// fsyncs it. On failure it cuts the file back and abandons the segment; the
// sequence numbers stay consumed.
func (s *Spool) writeLocked(seg *segment, recs []recIdx) error {
	_, err := s.cur.Write(s.buf)
	if err == nil {
		err = s.cur.Sync()
	}
	if err != nil {
		if terr := s.cur.Truncate(seg.size); terr != nil {
			s.log.Warn("spool cannot cut back a failed append; recovery will", "file", filepath.Base(seg.path), "error", terr)
		}
		_ = s.cur.Close()
		s.cur = nil
		if len(seg.recs) == 0 {
			s.segs = s.segs[:len(s.segs)-1]
			s.disk -= seg.size
			_ = os.Remove(seg.path)
		}
		return fmt.Errorf("write %s: %w", filepath.Base(seg.path), err)
	}
	seg.recs = append(seg.recs, recs...)
	grow := int64(len(s.buf))
	seg.size += grow
	s.disk += grow
	return nil
}

// rotateLocked closes the current segment and starts a new one named after
// the next sequence number.
func (s *Spool) rotateLocked() error {
	if s.cur != nil {
		if err := s.cur.Close(); err != nil {
			return err
		}
		s.cur = nil
	}
	path := filepath.Join(s.cfg.Dir, segName(s.st.next))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(segMagic))
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = fsutil.SyncDir(s.cfg.Dir)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	s.cur = f
	s.segs = append(s.segs, &segment{first: s.st.next, path: path, size: int64(len(segMagic))})
	s.disk += int64(len(segMagic))
	return nil
}

// makeRoomLocked drops the oldest segments until need more bytes fit in
// MaxBytes.
func (s *Spool) makeRoomLocked(need int64) error {
	n, bytes, i := uint64(0), int64(0), 0
	for ; i < len(s.segs) && s.disk-bytes+need > s.cfg.MaxBytes; i++ {
		g := s.segs[i]
		bytes += g.size
		n += pendingIn(g, s.st.acked)
	}
	if i == 0 {
		return nil
	}
	s.log.Warn("spool full, dropping oldest batches", "dropped", n, "segments", i, "max_bytes", s.cfg.MaxBytes)
	return s.dropFirstLocked(i, n)
}

// dropFirstLocked forgets the first k segments, counting n dropped records:
// the state is written first, so a crash before the files are gone leaves
// them acknowledged and recovery deletes them.
func (s *Spool) dropFirstLocked(k int, n uint64) error {
	old := s.st
	s.st.acked = max(s.st.acked, s.segs[k-1].last())
	s.st.dropped += n
	if err := s.writeState(); err != nil {
		s.st = old
		return err
	}
	return s.removeDeliveredLocked()
}

func pendingIn(g *segment, acked uint64) uint64 {
	if g.last() <= acked {
		return 0
	}
	return uint64(len(g.recs) - firstPending(g, acked))
}

// firstPending is the index in g.recs of the first record after acked.
func firstPending(g *segment, acked uint64) int {
	return sort.Search(len(g.recs), func(i int) bool { return g.recs[i].seq > acked })
}

// removeDeliveredLocked deletes the leading segments whose records are all
// acknowledged.
func (s *Spool) removeDeliveredLocked() error {
	for len(s.segs) > 0 {
		g := s.segs[0]
		isCur := len(s.segs) == 1 && s.cur != nil
		if g.last() > s.st.acked || (isCur && len(g.recs) == 0) {
			return nil
		}
		if isCur {
			if err := s.cur.Close(); err != nil {
				return err
			}
			s.cur = nil
		}
		if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.segs = s.segs[1:]
		s.disk -= g.size
	}
	return nil
}

// expireLocked drops pending records older than MaxAge.
func (s *Spool) expireLocked() error {
	cutoff := s.cfg.Clock().Add(-s.cfg.MaxAge).UnixNano()
	var n uint64
	upto := s.st.acked
	for _, g := range s.segs {
		stop := false
		for _, r := range g.recs[firstPending(g, upto):] {
			if r.ts >= cutoff {
				stop = true
				break
			}
			upto = r.seq
			n++
		}
		if stop {
			break
		}
	}
	if n == 0 {
		return nil
	}
	old := s.st
	s.st.acked = upto
	s.st.dropped += n
	if err := s.writeState(); err != nil {
		s.st = old
		return err
	}
	s.log.Warn("spool dropping batches older than max age", "dropped", n, "max_age", s.cfg.MaxAge)
	return s.removeDeliveredLocked()
}

// Peek returns up to max of the oldest unacknowledged records, in sequence
// order, without removing them; it first drops records older than MaxAge.
// A record whose CRC no longer verifies (damage after Open) is dropped and
// counted with the rest of its segment. Payloads are fresh copies.
func (s *Spool) Peek(max int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.expireLocked(); err != nil {
		return nil, fmt.Errorf("spool peek: %w", err)
	}
	if max <= 0 {
		return nil, nil
	}
	for {
		out, err := s.peekLocked(max)
		if err != errRetry {
			return out, err
		}
	}
}

// errRetry tells Peek that peekLocked dropped a damaged segment.
var errRetry = errors.New("retry")

func (s *Spool) peekLocked(max int) ([]Record, error) {
	var out []Record
	for gi := 0; gi < len(s.segs) && len(out) < max; gi++ {
		g := s.segs[gi]
		recs := g.recs[firstPending(g, s.st.acked):]
		if len(recs) == 0 {
			continue
		}
		recs = recs[:min(len(recs), max-len(out))]
		f, err := os.Open(g.path)
		if err != nil {
			return nil, fmt.Errorf("spool peek: %w", err)
		}
		for _, r := range recs {
			frame := make([]byte, r.size())
			_, err := f.ReadAt(frame, r.off)
			if err == nil && !frameCRCOK(frame) {
				err = errors.New("crc32c mismatch")
			}
			if err != nil {
				_ = f.Close()
				if len(out) > 0 {
					// Hand out what is good; the damage is dealt with
					// when it becomes the oldest pending record.
					return out, nil
				}
				n := pendingIn(g, s.st.acked)
				s.log.Warn("spool record unreadable, dropping the rest of its segment", "file", filepath.Base(g.path),
					"seq", r.seq, "dropped", n, "error", err)
				if err := s.dropFirstLocked(gi+1, n); err != nil {
					return nil, fmt.Errorf("spool peek: %w", err)
				}
				return nil, errRetry
			}
			out = append(out, Record{Seq: r.seq, Time: time.Unix(0, r.ts), Payload: frame[headerSize:]})
		}
		_ = f.Close()
	}
	return out, nil
}

// Ack marks every record with a sequence <= seq delivered, persisting the
// cursor atomically before it returns, and deletes segments left with no
// pending record. Acking an already acknowledged sequence is a no-op; a
// sequence not yet assigned is ErrAckBeyond.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if seq >= s.st.next {
		return fmt.Errorf("spool ack %d: %w (next is %d)", seq, ErrAckBeyond, s.st.next)
	}
	if seq <= s.st.acked {
		return nil
	}
	old := s.st
	s.st.acked = seq
	if err := s.writeState(); err != nil {
		s.st = old
		return fmt.Errorf("spool ack %d: %w", seq, err)
	}
	if err := s.removeDeliveredLocked(); err != nil {
		return fmt.Errorf("spool ack %d: %w", seq, err)
	}
	return nil
}

// Discard is Ack for records that will never be delivered (the hub
// refused them): every pending record with a sequence <= seq is
// acknowledged and counted in Stats.Dropped, persisted atomically before it
// returns. It reports how many were counted. A sequence not yet assigned is
// ErrAckBeyond.
func (s *Spool) Discard(seq uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if seq >= s.st.next {
		return 0, fmt.Errorf("spool discard %d: %w (next is %d)", seq, ErrAckBeyond, s.st.next)
	}
	if seq <= s.st.acked {
		return 0, nil
	}
	var n uint64
	for _, g := range s.segs {
		for _, r := range g.recs[firstPending(g, s.st.acked):] {
			if r.seq <= seq {
				n++
			}
		}
	}
	old := s.st
	s.st.acked, s.st.dropped = seq, s.st.dropped+n
	if err := s.writeState(); err != nil {
		s.st = old
		return 0, fmt.Errorf("spool discard %d: %w", seq, err)
	}
	if err := s.removeDeliveredLocked(); err != nil {
		return n, fmt.Errorf("spool discard %d: %w", seq, err)
	}
	return n, nil
}

// Stats returns a snapshot. It does not apply the age limit.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{DiskBytes: s.disk, Dropped: s.st.dropped, NextSeq: s.st.next}
	for _, g := range s.segs {
		for _, r := range g.recs[firstPending(g, s.st.acked):] {
			st.Pending++
			st.PendingBytes += int64(r.n)
		}
	}
	return st
}

// Close releases the open segment. Records already appended stay on disk.
// Further calls return ErrClosed; Close itself is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.cur != nil {
		err := s.cur.Close()
		s.cur = nil
		return err
	}
	return nil
}
