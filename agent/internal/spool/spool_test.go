package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func mustOpen(t *testing.T, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func payload(i uint64) []byte { return []byte(fmt.Sprintf("batch-%06d", i)) }

func appendN(t *testing.T, s *Spool, from, n uint64) {
	t.Helper()
	for i := from; i < from+n; i++ {
		seq, err := s.Append(payload(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if seq != i {
			t.Fatalf("Append %d: got seq %d", i, seq)
		}
	}
}

// checkPeek asserts that the pending records are exactly want, in order,
// each carrying payload(seq).
func checkPeek(t *testing.T, s *Spool, want []uint64) {
	t.Helper()
	recs, err := s.Peek(len(want) + 10)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	got := make([]uint64, len(recs))
	for i, r := range recs {
		got[i] = r.Seq
		if !bytes.Equal(r.Payload, payload(r.Seq)) {
			t.Fatalf("record %d: payload %q, want %q", r.Seq, r.Payload, payload(r.Seq))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pending seqs = %v, want %v", got, want)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppendPeekAck(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir, SegmentBytes: 100})
	appendN(t, s, 1, 10)
	if n := len(segFiles(t, dir)); n < 3 {
		t.Fatalf("want several segments with SegmentBytes=100, got %d", n)
	}
	recs, err := s.Peek(4)
	if err != nil || len(recs) != 4 || recs[0].Seq != 1 || recs[3].Seq != 4 {
		t.Fatalf("Peek(4) = %v, %v; want seqs 1..4", recs, err)
	}
	checkPeek(t, s, seqRange(1, 10)) // Peek does not consume
	if err := s.Ack(4); err != nil {
		t.Fatal(err)
	}
	checkPeek(t, s, seqRange(5, 10))
	if err := s.Ack(2); err != nil { // already acknowledged: no-op
		t.Fatal(err)
	}
	checkPeek(t, s, seqRange(5, 10))
	if err := s.Ack(11); !errors.Is(err, ErrAckBeyond) {
		t.Fatalf("Ack(11) = %v, want ErrAckBeyond", err)
	}
	if err := s.Ack(10); err != nil {
		t.Fatal(err)
	}
	checkPeek(t, s, nil)
	if n := len(segFiles(t, dir)); n != 0 {
		t.Fatalf("%d segment files left after acking everything", n)
	}
	st := s.Stats()
	if st.Pending != 0 || st.PendingBytes != 0 || st.NextSeq != 11 || st.Dropped != 0 || st.DiskBytes != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	appendN(t, s, 11, 2)
	checkPeek(t, s, []uint64{11, 12})
	if st := s.Stats(); st.Pending != 2 || st.PendingBytes != int64(2*len(payload(11))) {
		t.Fatalf("Stats = %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestAppendBatch(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir, SegmentBytes: 150})
	var ps [][]byte
	for i := uint64(1); i <= 20; i++ {
		ps = append(ps, payload(i))
	}
	first, last, err := s.AppendBatch(ps)
	if err != nil || first != 1 || last != 20 {
		t.Fatalf("AppendBatch = %d, %d, %v; want 1, 20", first, last, err)
	}
	if n := len(segFiles(t, dir)); n < 4 {
		t.Fatalf("batch should span several segments, got %d", n)
	}
	for _, g := range s.segs {
		if g.size > 150 {
			t.Fatalf("segment %s is %d bytes, above SegmentBytes", g.path, g.size)
		}
	}
	checkPeek(t, s, seqRange(1, 20))
	if f, l, err := s.AppendBatch(nil); f != 0 || l != 0 || err != nil {
		t.Fatalf("empty AppendBatch = %d, %d, %v", f, l, err)
	}
	s.Close()
	s2 := mustOpen(t, Config{Dir: dir, SegmentBytes: 150})
	checkPeek(t, s2, seqRange(1, 20))
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 120}
	s := mustOpen(t, cfg)
	appendN(t, s, 1, 7)
	if err := s.Ack(3); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, cfg)
	checkPeek(t, s, seqRange(4, 7))
	appendN(t, s, 8, 2) // the sequence continues
	checkPeek(t, s, seqRange(4, 9))
	if err := s.Ack(9); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := len(segFiles(t, dir)); n != 0 {
		t.Fatalf("%d segments left after acking all", n)
	}

	// Every segment is gone: the high-water mark still holds the sequence.
	s = mustOpen(t, cfg)
	if st := s.Stats(); st.NextSeq != 10 || st.Pending != 0 {
		t.Fatalf("after reopen of an empty spool: %+v, want NextSeq 10", st)
	}
	appendN(t, s, 10, 1)
}

func TestBadStateKeepsData(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir})
	appendN(t, s, 1, 3)
	s.Close()
	before := segFiles(t, dir)
	for _, bad := range []string{"", "garbage\n", "atelier-spool/1 next=5 acked=9 dropped=0\n", "atelier-spool/1 next=x acked=0 dropped=0\n", "atelier-spool/1 next=5 acked=0 dropped=0"} {
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Dir: dir}, testLogger(t))
		if !errors.Is(err, ErrBadState) {
			t.Fatalf("state %q: Open = %v, want ErrBadState", bad, err)
		}
	}
	if after := segFiles(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("segments changed by a failed Open: %v -> %v", before, after)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("atelier-spool/1 next=1 acked=0 dropped=0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, Config{Dir: dir})
	checkPeek(t, s, seqRange(1, 3))
	if st := s.Stats(); st.NextSeq != 4 {
		t.Fatalf("NextSeq = %d, want 4 (from the records, above the state's next)", st.NextSeq)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		cfg   Config
		field string
	}{
		"no dir":          {Config{}, "Dir"},
		"tiny max":        {Config{Dir: dir, MaxBytes: 10}, "MaxBytes"},
		"negative age":    {Config{Dir: dir, MaxAge: -time.Second}, "MaxAge"},
		"segment too big": {Config{Dir: dir, MaxBytes: 1000, SegmentBytes: 2000}, "SegmentBytes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(tc.cfg, nil)
			if !errors.Is(err, ErrInvalidConfig) || !bytes.Contains([]byte(err.Error()), []byte(tc.field)) {
				t.Fatalf("Open = %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	s := mustOpen(t, Config{Dir: t.TempDir(), MaxBytes: 1000, SegmentBytes: 500})
	if _, err := s.Append(make([]byte, 1000)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append(1000 bytes) with MaxBytes 1000 = %v, want ErrTooLarge", err)
	}
	// A record above SegmentBytes but within MaxBytes gets its own segment.
	if _, err := s.Append(make([]byte, 600)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 1 || st.NextSeq != 2 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestTornTail(t *testing.T) {
	for name, damage := range map[string]func(b []byte) []byte{
		"last record cut short":  func(b []byte) []byte { return b[:len(b)-5] },
		"half a header appended": func(b []byte) []byte { return append(b, make([]byte, headerSize/2)...) },
		"header of a long record appended": func(b []byte) []byte {
			return append(b, appendFrame(nil, 99, 0, make([]byte, 100))[:headerSize+10]...)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, Config{Dir: dir})
			appendN(t, s, 1, 3)
			s.Close()
			segs := segFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("want one segment, got %v", segs)
			}
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			good := len(b)
			b = damage(b)
			if err := os.WriteFile(segs[0], b, 0o600); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, Config{Dir: dir})
			want := seqRange(1, 3)
			if len(b) < good {
				want = seqRange(1, 2)
			}
			checkPeek(t, s, want)
			fi, err := os.Stat(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < good {
				if want := int64(good - len(payload(3)) - headerSize); fi.Size() != want {
					t.Fatalf("segment is %d bytes, want truncated to %d", fi.Size(), want)
				}
			} else if fi.Size() != int64(good) {
				t.Fatalf("segment is %d bytes, want the torn tail cut back to %d", fi.Size(), good)
			}
			if st := s.Stats(); st.Dropped != 0 {
				t.Fatalf("a torn tail is not a dropped batch: %+v", st)
			}
			seq, err := s.Append([]byte("after"))
			if err != nil || seq <= 3 {
				t.Fatalf("Append after recovery = %d, %v; want a seq above 3", seq, err)
			}
		})
	}
}

func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir, SegmentBytes: 200})
	appendN(t, s, 1, 12)
	s.Close()
	segs := segFiles(t, dir)
	if len(segs) < 2 {
		t.Fatalf("want several segments, got %v", segs)
	}
	// Flip one payload byte of the second record of the first segment.
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	rec := len(payload(1)) + headerSize
	b[len(segMagic)+rec+headerSize+2] ^= 0xff
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, Config{Dir: dir, SegmentBytes: 200})
	first := s.segs[1].first
	// Record 1 survives, the rest of the first segment is lost, later
	// segments are intact.
	checkPeek(t, s, append([]uint64{1}, seqRange(first, 12)...))
	st := s.Stats()
	if lost := first - 2; st.Dropped != lost {
		t.Fatalf("Dropped = %d, want %d (the records after the damage in the segment)", st.Dropped, lost)
	}
	if st.NextSeq != 13 {
		t.Fatalf("NextSeq = %d, want 13", st.NextSeq)
	}
	s.Close()
	s = mustOpen(t, Config{Dir: dir, SegmentBytes: 200})
	if st2 := s.Stats(); st2.Dropped != st.Dropped {
		t.Fatalf("Dropped not persisted: %d after reopen, want %d", st2.Dropped, st.Dropped)
	}
}

// A corrupt record in the last segment: its sequence numbers must not be
// issued again, because a consumer may already have sent them.
func TestCorruptTailNeverReusesSeq(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir})
	appendN(t, s, 1, 5)
	s.Close()
	segs := segFiles(t, dir)
	b, _ := os.ReadFile(segs[0])
	b[len(segMagic)+2*(len(payload(1))+headerSize)] ^= 0x01 // CRC of record 3
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, Config{Dir: dir})
	checkPeek(t, s, []uint64{1, 2})
	seq, err := s.Append([]byte("x"))
	if err != nil || seq <= 5 {
		t.Fatalf("Append = %d, %v; want a seq above 5", seq, err)
	}
}

func TestPeekDamageAfterOpen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir, SegmentBytes: 200})
	appendN(t, s, 1, 12)
	g := s.segs[0]
	f, err := os.OpenFile(g.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, g.recs[0].off+headerSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	next := s.segs[1].first
	checkPeek(t, s, seqRange(next, 12))
	if st := s.Stats(); st.Dropped != next-1 {
		t.Fatalf("Dropped = %d, want %d", st.Dropped, next-1)
	}
}

func TestSizeLimitDropsOldest(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 400, SegmentBytes: 100}
	s := mustOpen(t, cfg)
	const n = 60
	for i := uint64(1); i <= n; i++ {
		appendN(t, s, i, 1)
		if st := s.Stats(); st.DiskBytes > cfg.MaxBytes {
			t.Fatalf("after %d appends DiskBytes = %d > MaxBytes", i, st.DiskBytes)
		}
	}
	st := s.Stats()
	if st.Pending == 0 || st.Pending >= n {
		t.Fatalf("Pending = %d, want some but not all", st.Pending)
	}
	if st.Dropped != uint64(n-st.Pending) {
		t.Fatalf("Dropped = %d, want %d", st.Dropped, n-st.Pending)
	}
	// What is left is the newest contiguous run.
	checkPeek(t, s, seqRange(uint64(n-st.Pending+1), n))
	if got := int64(len(segFiles(t, dir))); got != int64(len(s.segs)) {
		t.Fatalf("%d files, %d segments", got, len(s.segs))
	}
	s.Close()
	s = mustOpen(t, cfg)
	if st2 := s.Stats(); st2.Dropped != st.Dropped || st2.Pending != st.Pending {
		t.Fatalf("after reopen %+v, want %+v", st2, st)
	}
	// Acknowledged records are not counted as dropped when evicted.
	if err := s.Ack(n); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, n+1, 40)
	if st3 := s.Stats(); st3.Dropped != st.Dropped+uint64(40-st3.Pending) {
		t.Fatalf("Dropped = %d, want %d", st3.Dropped, st.Dropped+uint64(40-st3.Pending))
	}
}

func TestAgeLimitDropsOldest(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := Config{Dir: dir, MaxAge: time.Hour, SegmentBytes: 100, Clock: clk.Now}
	s := mustOpen(t, cfg)
	appendN(t, s, 1, 5)
	clk.Advance(30 * time.Minute)
	appendN(t, s, 6, 5)
	clk.Advance(31 * time.Minute) // 1..5 are now 61 minutes old
	checkPeek(t, s, seqRange(6, 10))
	if st := s.Stats(); st.Dropped != 5 {
		t.Fatalf("Dropped = %d, want 5", st.Dropped)
	}
	recs, _ := s.Peek(1)
	if want := clk.Now().Add(-31 * time.Minute); !recs[0].Time.Equal(want) {
		t.Fatalf("record time %v, want %v", recs[0].Time, want)
	}
	clk.Advance(time.Hour)
	appendN(t, s, 11, 1) // Append applies the limit too
	s.Close()
	s = mustOpen(t, cfg)
	checkPeek(t, s, []uint64{11})
	if st := s.Stats(); st.Dropped != 10 {
		t.Fatalf("Dropped = %d, want 10", st.Dropped)
	}
}

func TestConcurrentProducerConsumer(t *testing.T) {
	s := mustOpen(t, Config{Dir: t.TempDir(), SegmentBytes: 500})
	const n = 300
	errc := make(chan error, 1)
	go func() {
		for i := uint64(1); i <= n; i++ {
			if _, err := s.Append(payload(i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	want := uint64(1)
	for want <= n {
		recs, err := s.Peek(7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Seq != want || !bytes.Equal(r.Payload, payload(want)) {
				t.Fatalf("got seq %d %q, want %d", r.Seq, r.Payload, want)
			}
			want++
		}
		if len(recs) > 0 {
			if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 0 || st.Dropped != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

const childEnv = "ATELIER_SPOOL_KILL_CHILD_DIR"

// TestMain runs the child of TestKill9 when childEnv is set: it appends
// until killed, printing each acknowledged sequence on its own line.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		killChild(dir)
	}
	os.Exit(m.Run())
}

func killChild(dir string) {
	s, err := Open(Config{Dir: dir, SegmentBytes: 4096}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := uint64(1); ; i++ {
		seq, err := s.Append(payload(i))
		if err != nil {
			fmt.Fprintln(w, "error", err)
			w.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(w, seq)
		w.Flush()
	}
}

func TestKill9(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var acked []uint64
		for sc.Scan() && len(acked) < 150 {
			v, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				_ = cmd.Process.Kill()
				t.Fatalf("child said %q", sc.Text())
			}
			acked = append(acked, v)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Read what the child printed before it died: those are
		// acknowledged too.
		for sc.Scan() {
			v, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err == nil {
				acked = append(acked, v)
			}
		}
		_ = cmd.Wait()
		if len(acked) < 150 {
			t.Fatalf("child acknowledged only %d appends", len(acked))
		}

		s, err := Open(Config{Dir: dir, SegmentBytes: 4096}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := s.Peek(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		bySeq := map[uint64]Record{}
		for i, r := range recs {
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("records out of order: %d after %d", r.Seq, recs[i-1].Seq)
			}
			bySeq[r.Seq] = r
		}
		for _, seq := range acked {
			r, ok := bySeq[seq]
			if !ok {
				t.Fatalf("round %d: acknowledged seq %d lost after kill -9", round, seq)
			}
			if round == 0 && !bytes.Equal(r.Payload, payload(seq)) {
				t.Fatalf("seq %d payload %q", seq, r.Payload)
			}
		}
		next := s.Stats().NextSeq
		if next <= acked[len(acked)-1] {
			t.Fatalf("NextSeq %d not above the last acknowledged %d", next, acked[len(acked)-1])
		}
		t.Logf("round %d: %d acknowledged, %d recovered, next %d", round, len(acked), len(recs), next)
		// Deliver everything; the next round's child continues the sequence.
		if err := s.Ack(next - 1); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

func TestForeignFilesIgnored(t *testing.T) {
	dir := t.TempDir()
	foreign := map[string]string{
		"README":                   "not ours",
		".state.tmp-123":           "leftover temp file",
		"00000000000000000000.seg": "sequence 0 is not a valid segment name",
		"123.seg":                  "too few digits",
	}
	for name, body := range foreign {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := mustOpen(t, Config{Dir: dir})
	appendN(t, s, 1, 2)
	s.Close()
	s = mustOpen(t, Config{Dir: dir})
	checkPeek(t, s, []uint64{1, 2})
	for name, body := range foreign {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != body {
			t.Fatalf("%s changed: %q, %v", name, b, err)
		}
	}
}

// With room for one segment only, making room drops the current segment
// itself; a batch larger than MaxBytes keeps only its newest part.
func TestSizeLimitOneSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 200, SegmentBytes: 200}
	s := mustOpen(t, cfg)
	appendN(t, s, 1, 12) // 36-byte records: 5 fit after the magic
	st := s.Stats()
	if st.DiskBytes > cfg.MaxBytes || st.Pending == 0 || st.Dropped != uint64(12-st.Pending) {
		t.Fatalf("Stats = %+v", st)
	}
	checkPeek(t, s, seqRange(uint64(12-st.Pending+1), 12))
	var ps [][]byte
	for i := uint64(13); i <= 30; i++ {
		ps = append(ps, payload(i))
	}
	first, last, err := s.AppendBatch(ps)
	if err != nil || first != 13 || last != 30 {
		t.Fatalf("AppendBatch = %d, %d, %v", first, last, err)
	}
	st = s.Stats()
	if st.DiskBytes > cfg.MaxBytes || st.Dropped != uint64(30-st.Pending) {
		t.Fatalf("Stats = %+v", st)
	}
	checkPeek(t, s, seqRange(uint64(30-st.Pending+1), 30))
}

func TestDiscardCountsDropped(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, Config{Dir: dir})
	appendN(t, s, 1, 5)
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	n, err := s.Discard(3)
	if err != nil || n != 2 {
		t.Fatalf("Discard(3) = %d, %v; want 2 (seq 2 and 3), nil", n, err)
	}
	if n, err := s.Discard(3); err != nil || n != 0 {
		t.Fatalf("second Discard(3) = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.Discard(9); !errors.Is(err, ErrAckBeyond) {
		t.Fatalf("Discard(9) error %v, want ErrAckBeyond", err)
	}
	st := s.Stats()
	if st.Dropped != 2 || st.Pending != 2 {
		t.Fatalf("stats %+v, want Dropped 2 and Pending 2", st)
	}
	recs, err := s.Peek(10)
	if err != nil || len(recs) != 2 || recs[0].Seq != 4 {
		t.Fatalf("Peek after discard: %v, %v; want seq 4 and 5", recs, err)
	}
	_ = s.Close()
	s2 := mustOpen(t, Config{Dir: dir})
	if st := s2.Stats(); st.Dropped != 2 || st.Pending != 2 {
		t.Fatalf("after reopen stats %+v, want Dropped 2 and Pending 2", st)
	}
}
