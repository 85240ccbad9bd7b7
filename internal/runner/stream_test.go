package runner

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
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
