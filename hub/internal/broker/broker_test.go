package broker

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestStartServesNATSAndShutsDown(t *testing.T) {
	b, err := New(Config{NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.NATSAddr())
	if err != nil {
		b.Shutdown()
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"jetstream":true`) {
		t.Errorf("NATS greeting %q, %v", line, err)
	}
	if strings.HasSuffix(b.MQTTAddr(), ":0") || strings.HasSuffix(b.MQTTAddr(), ":-1") {
		t.Errorf("MQTT address %q not resolved", b.MQTTAddr())
	}
	b.Shutdown()
	if _, err := net.Dial("tcp", b.NATSAddr()); err == nil {
		t.Error("NATS still accepting after Shutdown")
	}
}

func TestNewRejectsBadAddresses(t *testing.T) {
	for _, addr := range []string{"nohost", "127.0.0.1:99999", "127.0.0.1:x"} {
		if _, err := New(Config{NATS: addr, MQTT: "127.0.0.1:0", StoreDir: t.TempDir()}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "nats") {
			t.Errorf("New with nats %q: %v", addr, err)
		}
	}
}
