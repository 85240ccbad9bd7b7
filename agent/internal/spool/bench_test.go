package spool

import (
	"testing"
)

// BenchmarkAppend measures one durable append of a 1 KiB batch: it is
// dominated by the fsync. The consumer side is simulated by acknowledging
// every 1000 appends so the size limit does not interfere.
func BenchmarkAppend(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := make([]byte, 1024)
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		seq, err := s.Append(p)
		if err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			if err := s.Ack(seq); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAppendBatch64 appends 64 batches of 1 KiB per call (one fsync
// per segment touched); ns/op is per call of 64 batches. It acknowledges
// every 16 calls.
func BenchmarkAppendBatch64(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ps := make([][]byte, 64)
	for i := range ps {
		ps[i] = make([]byte, 1024)
	}
	b.SetBytes(int64(64 * 1024))
	for i := 0; b.Loop(); i++ {
		_, last, err := s.AppendBatch(ps)
		if err != nil {
			b.Fatal(err)
		}
		if i%16 == 15 {
			if err := s.Ack(last); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPeekAck reads and acknowledges 64 records at a time.
func BenchmarkPeekAck64(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ps := make([][]byte, 64)
	for i := range ps {
		ps[i] = make([]byte, 1024)
	}
	for b.Loop() {
		b.StopTimer()
		if _, _, err := s.AppendBatch(ps); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		recs, err := s.Peek(64)
		if err != nil || len(recs) != 64 {
			b.Fatal(len(recs), err)
		}
		if err := s.Ack(recs[63].Seq); err != nil {
			b.Fatal(err)
		}
	}
}
