package modelcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func testRef(data []byte, chunk uint32) *agentv1.ModelRef {
	ref := &agentv1.ModelRef{Name: "m", Version: 1, Sha256: hexSum(data), Size: uint64(len(data)), ChunkSize: chunk}
	for off := 0; off < len(data); off += int(chunk) {
		ref.ChunkSha256 = append(ref.ChunkSha256, hexSum(data[off:min(off+int(chunk), len(data))]))
	}
	return ref
}

func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sliceSource serves chunks of data and records every index asked for.
type sliceSource struct {
	data  []byte
	chunk int
	mu    sync.Mutex
	asked []uint32
	// failAt makes the request for this index fail (once) when >= 0.
	failAt int
	// corrupt flips a byte of this index's chunk when >= 0.
	corrupt int
}

func newSource(data []byte, chunk int) *sliceSource {
	return &sliceSource{data: data, chunk: chunk, failAt: -1, corrupt: -1}
}

var errInjected = errors.New("injected failure")

func (s *sliceSource) Chunk(_ context.Context, _ string, i uint32) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, i)
	if int(i) == s.failAt {
		s.failAt = -1
		return nil, errInjected
	}
	off := int(i) * s.chunk
	b := slices.Clone(s.data[off:min(off+s.chunk, len(s.data))])
	if int(i) == s.corrupt {
		b[0] ^= 0xff
	}
	return b, nil
}

func newCache(t *testing.T, dir string) *Cache {
	t.Helper()
	c, err := New(Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetchAndNeverAgain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		chunk uint32
	}{
		{"exact multiple", 4096, 1024},
		{"short last chunk", 5000, 1024},
		{"single chunk", 100, 1024},
		{"empty file", 0, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(tc.size, 1)
			ref := testRef(data, tc.chunk)
			c := newCache(t, t.TempDir())
			src := newSource(data, int(tc.chunk))
			var last uint64
			p, err := c.Fetch(context.Background(), ref, src, func(n uint64) { last = n })
			if err != nil {
				t.Fatal(err)
			}
			if p != c.Path(ref.Sha256) || !slices.Equal(readFile(t, p), data) {
				t.Fatalf("cached file at %s differs from the model", p)
			}
			if last != uint64(tc.size) {
				t.Fatalf("progress ended at %d, want %d", last, tc.size)
			}
			if got, want := len(src.asked), len(ref.ChunkSha256); got != want {
				t.Fatalf("%d chunk requests, want %d", got, want)
			}
			if _, err := os.Stat(c.progressPath(ref.Sha256)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("progress record left behind: %v", err)
			}
			src.asked = nil
			if _, err := c.Fetch(context.Background(), ref, src, nil); err != nil {
				t.Fatal(err)
			}
			if len(src.asked) != 0 {
				t.Fatalf("cached digest fetched again: %v", src.asked)
			}
			// A second cache on the same directory (a restart) also never refetches.
			if _, err := newCache(t, c.dir).Fetch(context.Background(), ref, nil, nil); err != nil {
				t.Fatalf("after restart: %v", err)
			}
		})
	}
}

func TestResumeAfterInjectedFailure(t *testing.T) {
	data := testData(10*1000+7, 2)
	ref := testRef(data, 1000)
	dir := t.TempDir()
	src := newSource(data, 1000)
	src.failAt = 6
	_, err := newCache(t, dir).Fetch(context.Background(), ref, src, nil)
	if !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	// A new Cache on the same directory is a process restart.
	src.asked = nil
	var first uint64
	p, err := newCache(t, dir).Fetch(context.Background(), ref, src, func(n uint64) {
		if first == 0 {
			first = n
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{6, 7, 8, 9, 10}; !slices.Equal(src.asked, want) {
		t.Fatalf("after resume asked for %v, want %v", src.asked, want)
	}
	if first != 6000 {
		t.Fatalf("first progress after resume = %d, want 6000", first)
	}
	if !slices.Equal(readFile(t, p), data) {
		t.Fatal("resumed file differs from the model")
	}
}

func TestResumeDistrustsDamagedPartial(t *testing.T) {
	data := testData(8*512, 3)
	ref := testRef(data, 512)
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, c *Cache)
		wantFrom uint32
	}{
		{"chunk 2 flipped on disk", func(t *testing.T, c *Cache) {
			f, err := os.OpenFile(c.partPath(ref.Sha256), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{data[2*512+5] ^ 1}, 2*512+5); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"progress record garbage", func(t *testing.T, c *Cache) {
			if err := os.WriteFile(c.progressPath(ref.Sha256), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 5},
		{"progress record for another chunk size", func(t *testing.T, c *Cache) {
			rec := progress{sha: ref.Sha256, chunkSize: 1024, next: 2}.marshal()
			if err := os.WriteFile(c.progressPath(ref.Sha256), rec, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"unsynced tail beyond the record", func(t *testing.T, c *Cache) {
			f, err := os.OpenFile(c.partPath(ref.Sha256), os.O_RDWR|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(data[5*512 : 5*512+100]); err != nil {
				t.Fatal(err)
			}
		}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := newSource(data, 512)
			src.failAt = 5
			c := newCache(t, dir)
			if _, err := c.Fetch(context.Background(), ref, src, nil); !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			tc.damage(t, c)
			src.asked = nil
			p, err := newCache(t, dir).Fetch(context.Background(), ref, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(src.asked) == 0 || src.asked[0] != tc.wantFrom {
				t.Fatalf("resumed at %v, want from %d", src.asked, tc.wantFrom)
			}
			if !slices.Equal(readFile(t, p), data) {
				t.Fatal("file differs from the model")
			}
		})
	}
}

func TestCorruptChunk(t *testing.T) {
	data := testData(4*256, 4)
	ref := testRef(data, 256)
	c := newCache(t, t.TempDir())
	src := newSource(data, 256)
	src.corrupt = 2
	_, err := c.Fetch(context.Background(), ref, src, nil)
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want *DigestMismatchError", err)
	}
	if dm.What != "chunk 2 of 4" || dm.Expected != ref.ChunkSha256[2] || dm.Actual == dm.Expected {
		t.Fatalf("mismatch = %+v", dm)
	}
	if c.Has(ref.Sha256) {
		t.Fatal("model cached despite a corrupt chunk")
	}
	// The verified prefix is kept: a retry with a good source asks only from chunk 2.
	src.corrupt, src.asked = -1, nil
	if _, err := c.Fetch(context.Background(), ref, src, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.asked, []uint32{2, 3}) {
		t.Fatalf("retry asked %v, want [2 3]", src.asked)
	}
}

func TestShortChunk(t *testing.T) {
	data := testData(1000, 5)
	ref := testRef(data, 400)
	src := newSource(data[:900], 400) // last chunk is 100 bytes instead of 200
	_, err := newCache(t, t.TempDir()).Fetch(context.Background(), ref, src, nil)
	if !errors.Is(err, ErrBadChunk) {
		t.Fatalf("err = %v, want ErrBadChunk", err)
	}
}

func TestCorruptFinalFile(t *testing.T) {
	data := testData(3000, 6)
	ref := testRef(data, 1000)
	ref.Sha256 = hexSum([]byte("another model")) // chunks fine, whole digest wrong
	c := newCache(t, t.TempDir())
	_, err := c.Fetch(context.Background(), ref, newSource(data, 1000), nil)
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.What != "file" || dm.Actual != hexSum(data) {
		t.Fatalf("err = %v, want a file digest mismatch", err)
	}
	if c.Has(ref.Sha256) {
		t.Fatal("mismatching file cached")
	}
	if _, err := os.Stat(c.partPath(ref.Sha256)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial kept after whole-file mismatch: %v", err)
	}
}

func TestCorruptCachedFileIsRefetched(t *testing.T) {
	data := testData(3000, 7)
	ref := testRef(data, 1000)
	c := newCache(t, t.TempDir())
	src := newSource(data, 1000)
	p, err := c.Fetch(context.Background(), ref, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(data)
	bad[1500] ^= 1
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ref.Sha256); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Get on corrupt file: %v", err)
	}
	if _, err := c.Get(ref.Sha256); !errors.Is(err, ErrNotCached) {
		t.Fatalf("corrupt file not removed: %v", err)
	}
	src.asked = nil
	if _, err := c.Fetch(context.Background(), ref, src, nil); err != nil {
		t.Fatal(err)
	}
	if len(src.asked) != 3 || !slices.Equal(readFile(t, p), data) {
		t.Fatalf("refetch asked %v", src.asked)
	}
}

func TestValidateRef(t *testing.T) {
	good := testRef(testData(2500, 8), 1000)
	for _, tc := range []struct {
		name string
		mut  func(r *agentv1.ModelRef)
	}{
		{"nil", nil},
		{"upper-case digest", func(r *agentv1.ModelRef) { r.Sha256 = "A" + r.Sha256[1:] }},
		{"short digest", func(r *agentv1.ModelRef) { r.Sha256 = r.Sha256[:10] }},
		{"zero chunk size", func(r *agentv1.ModelRef) { r.ChunkSize = 0 }},
		{"chunk size over limit", func(r *agentv1.ModelRef) { r.ChunkSize = MaxChunkSize + 1 }},
		{"missing chunk digest", func(r *agentv1.ModelRef) { r.ChunkSha256 = r.ChunkSha256[:2] }},
		{"extra chunk digest", func(r *agentv1.ModelRef) { r.ChunkSha256 = append(r.ChunkSha256, r.Sha256) }},
		{"bad chunk digest", func(r *agentv1.ModelRef) { r.ChunkSha256[1] = "xyz" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *agentv1.ModelRef
			if tc.mut != nil {
				r = testRef(testData(2500, 8), 1000)
				tc.mut(r)
			}
			if err := ValidateRef(r); !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("err = %v, want ErrInvalidRef", err)
			}
		})
	}
	if err := ValidateRef(good); err != nil {
		t.Fatal(err)
	}
}

func TestGC(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir, Keep: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var shas []string
	base := time.Now().Add(-time.Hour)
	for i := range 5 {
		data := []byte(fmt.Sprintf("model %d", i))
		ref := testRef(data, 1024)
		p, err := c.Fetch(context.Background(), ref, newSource(data, 1024), nil)
		if err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute) // model 4 is the most recent
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		shas = append(shas, ref.Sha256)
	}
	// A stale partial for a digest no longer wanted.
	stale := filepath.Join(dir, "partial", hexSum([]byte("stale"))+".part")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := c.GC([]string{shas[0]})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{shas[1], shas[2]}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	for i, s := range shas {
		if got, keep := c.Has(s), i == 0 || i >= 3; got != keep {
			t.Fatalf("model %d present=%v, want %v", i, got, keep)
		}
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("stale partial not removed")
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add(progress{sha: hexSum(nil), chunkSize: 262144, next: 3}.marshal())
	f.Add([]byte("atelier-partial/1 x 1 1\n"))
	f.Add([]byte(""))
	f.Add([]byte("atelier-partial/1 " + hexSum(nil) + " 01 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProgress(b)
		if err != nil {
			if !errors.Is(err, ErrBadProgress) {
				t.Fatalf("error %v does not wrap ErrBadProgress", err)
			}
			return
		}
		// Anything accepted round-trips exactly: the format is canonical.
		if got := p.marshal(); string(got) != string(b) {
			t.Fatalf("round trip: %q -> %+v -> %q", b, p, got)
		}
	})
}

// BenchmarkFetch10MiB is the cache's share of a transfer: 40 chunks of
// 256 KiB hashed, appended and fsynced (chunk and progress record each),
// from an in-memory source.
func BenchmarkFetch10MiB(b *testing.B) {
	data := testData(10<<20, 9)
	ref := testRef(data, 256*1024)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		b.StopTimer()
		c, err := New(Config{Dir: b.TempDir()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := c.Fetch(context.Background(), ref, newSource(data, 256*1024), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// hookSource calls before ahead of serving each chunk.
type hookSource struct {
	*sliceSource
	before func(i uint32)
}

func (s hookSource) Chunk(ctx context.Context, sha string, i uint32) ([]byte, error) {
	s.before(i)
	return s.sliceSource.Chunk(ctx, sha, i)
}

// TestCheckpointEverySyncBytes: with SyncBytes of three chunks, the
// progress record moves in steps of three while the transfer runs (what a
// crash would resume from), and a crash-like restart with a longer,
// unrecorded tail in the partial file resumes from the record.
func TestCheckpointEverySyncBytes(t *testing.T) {
	data := testData(10*1000+7, 4)
	ref := testRef(data, 1000)
	dir := t.TempDir()
	c, err := New(Config{Dir: dir, SyncBytes: 3000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []uint32
	src := hookSource{newSource(data, 1000), func(i uint32) {
		b, err := os.ReadFile(c.progressPath(ref.Sha256))
		if err != nil || len(b) == 0 {
			seen = append(seen, 0)
			return
		}
		p, err := parseProgress(b)
		if err != nil {
			t.Errorf("chunk %d: %v", i, err)
			return
		}
		seen = append(seen, p.next)
	}}
	src.failAt = 8
	if _, err := c.Fetch(context.Background(), ref, src, nil); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	// Records seen before asking for chunks 0..8: checkpoints once 3 and 6
	// chunks are in.
	if want := []uint32{0, 0, 0, 3, 3, 3, 6, 6, 6}; !slices.Equal(seen, want) {
		t.Fatalf("progress before each chunk = %v, want %v", seen, want)
	}
	// The error checkpointed chunks 0..7.
	b, err := os.ReadFile(c.progressPath(ref.Sha256))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := parseProgress(b); err != nil || p.next != 8 {
		t.Fatalf("progress after the error = %+v, %v; want next 8", p, err)
	}
	// A crash after a checkpoint at 3 with chunks 3..7 written but not
	// recorded: the record says 3, the file is longer; resume starts at 3.
	if err := os.WriteFile(c.progressPath(ref.Sha256), progress{sha: ref.Sha256, chunkSize: 1000, next: 3}.marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	src2 := newSource(data, 1000)
	p, err := newCache(t, dir).Fetch(context.Background(), ref, src2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(src2.asked, want) {
		t.Fatalf("after the crash asked for %v, want %v", src2.asked, want)
	}
	if !slices.Equal(readFile(t, p), data) {
		t.Fatal("resumed file differs from the model")
	}
}
