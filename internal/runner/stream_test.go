package runner

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

func TestLineSplitter(t *testing.T) {
	type line struct {
		text      string
		continued bool
	}
	tests := []struct {
		name   string
		writes []string
		max    int
		want   []line
	}{
		{"lines across writes", []string{"ab", "c\nde", "f\n\ng"}, 16, []line{{"abc", false}, {"def", false}, {"", false}, {"g", false}}},
		{"crlf", []string{"a\r\nb\r\n"}, 16, []line{{"a", false}, {"b", false}}},
		{"exactly max", []string{"abcd\n"}, 4, []line{{"abcd", false}}},
		{"long line split", []string{"abcdefghij\nk"}, 4, []line{{"abcd", false}, {"efgh", true}, {"ij", true}, {"k", false}}},
		{"long line in pieces", []string{"abc", "def", "ghi\n"}, 4, []line{{"abcd", false}, {"efgh", true}, {"i", true}}},
		{"utf8 boundary", []string{"aé" + "é\n"}, 4, []line{{"aé", false}, {"é", true}}},
		{"invalid utf8 replaced", []string{"a\xffb\n"}, 16, []line{{"a\uFFFDb", false}}},
		{"invalid utf8 never grows past max", []string{"\xff\xfe\xff\xfe\n"}, 16, []line{{"\uFFFD", false}}},
		{"invalid utf8 at the limit", []string{"a\xffa\xff\n"}, 4, []line{{"a?a?", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var term bytes.Buffer
			var got []line
			s := &lineSplitter{term: &term, max: tc.max, onLine: func(text string, c bool) { got = append(got, line{text, c}) }}
			for _, w := range tc.writes {
				if n, err := s.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			s.Close()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lines = %+v, want %+v", got, tc.want)
			}
			if term.String() != strings.Join(tc.writes, "") {
				t.Errorf("terminal got %q, want the bytes unchanged", term.String())
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine("model.onnx", 12_300_000, 41_000_000, 2e9)
	want := "atelier: uploading model.onnx  12.3 MB / 41.0 MB   30%  6.2 MB/s"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
}

func TestLogBatchLen(t *testing.T) {
	big := strings.Repeat("x", maxLogBatchBytes/2+1)
	lines := []hub.LogLine{{Text: big}, {Text: big}, {Text: "a"}}
	if n := logBatchLen(lines, 500); n != 1 {
		t.Errorf("logBatchLen = %d, want 1 (two big lines exceed the byte cap)", n)
	}
	if n := logBatchLen(lines[2:], 500); n != 1 {
		t.Errorf("logBatchLen = %d, want 1", n)
	}
	huge := []hub.LogLine{{Text: strings.Repeat("x", maxLogBatchBytes+1)}}
	if n := logBatchLen(huge, 500); n != 1 {
		t.Errorf("logBatchLen = %d, want 1 (a batch holds at least one line)", n)
	}
	small := make([]hub.LogLine, 1000)
	if n := logBatchLen(small, 500); n != 500 {
		t.Errorf("logBatchLen = %d, want 500", n)
	}
}

func BenchmarkLineSplitter(b *testing.B) {
	chunk := []byte(strings.Repeat("epoch 12 step 3400 loss 0.1234 acc 0.98\n", 100))
	s := &lineSplitter{term: io.Discard, max: 64 << 10, onLine: func(string, bool) {}}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Write(chunk)
	}
}

func TestProgressReader(t *testing.T) {
	tests := []struct {
		name string
		step time.Duration // clock advance per read
		want string
	}{
		{"fast upload prints nothing", time.Millisecond, ""},
		{"slow upload shows progress", 400 * time.Millisecond,
			"\ratelier: uploading m.onnx  2.0 kB / 4.0 kB   50%  1.7 kB/s" +
				"\ratelier: uploading m.onnx  3.0 kB / 4.0 kB   75%  1.9 kB/s" +
				"\ratelier: uploading m.onnx  4.0 kB / 4.0 kB  100%  2.0 kB/s" +
				"\ratelier: uploading m.onnx  4.0 kB / 4.0 kB  100%  2.0 kB/s\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			clock := start
			var out bytes.Buffer
			p := &progressReader{r: iotest.OneByteReader(bytes.NewReader(make([]byte, 4000))), total: 4000, name: "m.onnx", w: &out, start: start,
				now: func() time.Time { return clock }}
			buf := make([]byte, 1000)
			for {
				clock = clock.Add(tc.step)
				_, err := io.ReadFull(p, buf)
				if err != nil {
					break
				}
			}
			p.done()
			if out.String() != tc.want {
				t.Errorf("progress output %q, want %q", out.String(), tc.want)
			}
		})
	}
}
