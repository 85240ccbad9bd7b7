package hubproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProcParsers(t *testing.T) {
	if _, err := CPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	rss, err := RSSMiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 {
		t.Fatalf("own VmRSS %v MiB, want above 0", rss)
	}
	if _, err := CPUTicks(-1); err == nil {
		t.Fatal("CPUTicks(-1): no error")
	}
	m, err := Memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS || m.Anon <= 0 || m.File <= 0 || m.Anon+m.File > m.RSS+1 {
		t.Fatalf("own memory %+v MiB: want RSS > 0, HWM >= RSS, Anon and File > 0 and within RSS", m)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{filepath.Base(self), true},
		{"no-such-library.so", false},
	} {
		got, err := Mapped(os.Getpid(), tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Mapped(self, %q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &TailBuffer{Max: 8}
	for _, s := range []string{"hello ", "world", "!"} {
		if _, err := b.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.String(); got != "o world!"[len("o world!")-8:] || !strings.HasSuffix(got, "world!") || len(got) != 8 {
		t.Fatalf("tail = %q, want the last 8 bytes %q", got, "o world!")
	}
}
