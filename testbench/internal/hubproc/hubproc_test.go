package hubproc

import (
	"os"
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
