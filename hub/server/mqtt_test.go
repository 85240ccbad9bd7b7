package server

import (
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/atelier-ml/atelier/hub/internal/broker"
)

// TestMQTTRoundTrip connects two real paho clients to the embedded broker's
// MQTT listener: one subscribes, the other publishes, at QoS 0 and 1. They
// log in as the hub's own user (the broker requires authentication).
func TestMQTTRoundTrip(t *testing.T) {
	s, _ := startHub(t, nil)
	addr := "tcp://" + s.Addrs().MQTT
	s.mu.Lock()
	secret := s.hubSecret
	s.mu.Unlock()
	connect := func(id string) mqtt.Client {
		t.Helper()
		opts := mqtt.NewClientOptions().AddBroker(addr).SetClientID(id).
			SetUsername(broker.HubUser).SetPassword(secret).
			SetConnectTimeout(10 * time.Second).SetAutoReconnect(false).SetProtocolVersion(4)
		c := mqtt.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	sub := connect("sub")
	got := make(chan mqtt.Message, 4)
	if tok := sub.Subscribe("atelier/v1/test/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := connect("pub")
	for qos, topic := range []string{"atelier/v1/test/q0", "atelier/v1/test/q1"} {
		if tok := pub.Publish(topic, byte(qos), false, []byte("hello "+topic)); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
		select {
		case m := <-got:
			if m.Topic() != topic || string(m.Payload()) != "hello "+topic {
				t.Errorf("received %s %q, want %s", m.Topic(), m.Payload(), topic)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no message on %s", topic)
		}
	}
}
