package mqttsession

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestNextAttemptBrokerBack: with the errors a real connect gives, attempts
// that find nothing listening keep growing the backoff, and the first
// failure of another kind after them (a broker that accepted the TCP
// connection and closed it during the handshake) starts it again from the
// shortest delay; further such failures grow it again.
func TestNextAttemptBrokerBack(t *testing.T) {
	// Nothing listening: a port that was just free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	refusedErr := connectErr(t, closedAddr)
	if !errors.Is(refusedErr, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", refusedErr)
	}
	// A broker that accepts and hangs up before CONNACK.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	eofErr := connectErr(t, ln.Addr().String())
	if errors.Is(eofErr, syscall.ECONNREFUSED) || !errors.Is(eofErr, io.EOF) && !errors.Is(eofErr, syscall.ECONNRESET) {
		t.Fatalf("connect to a listener that hangs up: %v, want EOF or a reset", eofErr)
	}

	attempt, refused := 0, false
	for range 6 { // the hub is down
		attempt, refused = nextAttempt(attempt, refused, refusedErr)
		attempt++
	}
	if attempt != 6 || !refused {
		t.Fatalf("after 6 refusals: attempt %d, refused %v; want 6, true", attempt, refused)
	}
	if attempt, refused = nextAttempt(attempt, refused, eofErr); attempt != 0 || refused {
		t.Fatalf("first hang-up after refusals: attempt %d, refused %v; want 0, false", attempt, refused)
	}
	attempt++
	if attempt, refused = nextAttempt(attempt, refused, eofErr); attempt != 1 || refused {
		t.Fatalf("second hang-up: attempt %d, refused %v; want 1 (growing again), false", attempt, refused)
	}
}

// connectErr is the error of one Session connect to addr.
func connectErr(t *testing.T, addr string) error {
	t.Helper()
	cfg := testConfig("tcp://"+addr, "edge-1")
	cfg.ConnectTimeout = 2 * time.Second
	s, err := New(cfg, Handlers{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.connect(context.Background())
	if err == nil {
		t.Fatalf("connect to %s succeeded", addr)
	}
	return err
}
