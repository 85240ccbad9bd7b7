package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream stream in which nats-server keeps the MQTT QoS 1 messages
// it has yet to deliver to QoS 1 subscribers (here only the hub's own
// wildcard subscriptions: agents subscribe at QoS 0). nats-server creates
// it on the first MQTT CONNECT of an account, on disk, unless a stream of
// that name exists already; it never checks its storage.
const (
	mqttMsgsStream  = "$MQTT_msgs"
	mqttMsgsSubject = "$MQTT.msgs.>"
)

// MQTTMessagesMaxBytes bounds the memory the MQTT messages stream may hold;
// beyond it the oldest messages are dropped (agents send them again: see
// ensureMQTTMessagesInMemory).
const MQTTMessagesMaxBytes = 256 << 20

// ensureMQTTMessagesInMemory makes the MQTT messages stream keep its
// messages in memory, before any MQTT client can connect (the
// authenticator refuses everyone but the hub until it returns).
//
// On disk, nats-server stores every QoS 1 message bound for the hub and
// removes it again when the hub acknowledges it a moment later; the stream
// is then empty, so its file store deletes its block file and creates a new
// one, once per message. With 1,000 agents uploading telemetry every second
// that file churn, plus JetStream's ack handling around it, was 15% of the
// hub's CPU (a profile of bench telemetry). The broker is transport, not
// storage of record: every flow through it is retried end to end (an
// unacknowledged telemetry upload is sent again and counted once, a chunk
// that does not arrive is requested again, reported state is republished
// every heartbeat), and the broker dies with the hub, so what a file store
// would keep across a restart is sent again anyway. A stream left on disk
// by an older hub is deleted and made again in memory.
func (b *Broker) ensureMQTTMessagesInMemory(ctx context.Context, ns *server.Server) error {
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.UserInfo(HubUser, b.hubSecret),
		nats.Name("atelier-hub-setup"), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("broker: mqtt messages stream: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("broker: mqtt messages stream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	want := jetstream.StreamConfig{
		Name:      mqttMsgsStream,
		Subjects:  []string{mqttMsgsSubject},
		Storage:   jetstream.MemoryStorage,
		Retention: jetstream.InterestPolicy,
		Replicas:  1,
		MaxBytes:  MQTTMessagesMaxBytes,
		Discard:   jetstream.DiscardOld,
	}
	s, err := js.Stream(ctx, mqttMsgsStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return fmt.Errorf("broker: mqtt messages stream: look up: %w", err)
	default:
		cfg := s.CachedInfo().Config
		if cfg.Storage == jetstream.MemoryStorage {
			if cfg.MaxBytes != want.MaxBytes || cfg.Discard != want.Discard {
				if _, err := js.UpdateStream(ctx, want); err != nil {
					return fmt.Errorf("broker: mqtt messages stream: update: %w", err)
				}
			}
			return nil
		}
		b.log.Info("broker: moving the MQTT messages stream from disk to memory", "messages", s.CachedInfo().State.Msgs)
		if err := js.DeleteStream(ctx, mqttMsgsStream); err != nil {
			return fmt.Errorf("broker: mqtt messages stream: delete the one on disk: %w", err)
		}
	}
	if _, err := js.CreateStream(ctx, want); err != nil {
		return fmt.Errorf("broker: mqtt messages stream: create: %w", err)
	}
	return nil
}
