package broker

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
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

// TestSlowMQTTConnectAccepted: a client whose CONNECT arrives more than
// nats-server's default 2 s after its TCP connection (a loaded hub while a
// fleet reconnects) is still accepted, within MQTTAuthTimeout.
func TestSlowMQTTConnectAccepted(t *testing.T) {
	secret := NewSecret()
	b, err := New(Config{NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: t.TempDir(),
		Auth: &AuthConfig{Credentials: NewRegistry(), HubSecret: secret}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	c, err := net.Dial("tcp", b.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(2500 * time.Millisecond) // past nats-server's default auth timeout
	if _, err := c.Write(mqttConnect("slow-client", HubUser, secret)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("CONNECT sent 2.5 s after connecting: %v, want a CONNACK", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		t.Fatalf("CONNACK % x, want 20 02 xx 00 (accepted)", ack)
	}
}

// mqttConnect encodes an MQTT 3.1.1 CONNECT with a clean session, a 30 s
// keep-alive and a user name and password.
func mqttConnect(clientID, user, password string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(str("MQTT"), 4, 0xC2, 0, 30) // level 4; flags: user, password, clean session
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(password)...)
	return append([]byte{0x10, byte(len(body))}, body...) // every field here is short: one length byte
}
