package broker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMQTTMessagesInMemory: Start leaves the MQTT messages stream in
// memory, with its byte bound, and moves one left on disk (as an older
// hub made it) to memory at the next start, on an open broker as on one
// with authentication.
func TestMQTTMessagesInMemory(t *testing.T) {
	for _, auth := range []bool{false, true} {
		dir := t.TempDir()
		start := func() *Broker {
			cfg := Config{NATS: "127.0.0.1:0", MQTT: "127.0.0.1:0", StoreDir: dir}
			if auth {
				cfg.Auth = &AuthConfig{Credentials: NewRegistry(), HubSecret: NewSecret()}
			}
			b, err := New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			return b
		}
		stream := func(b *Broker, f func(context.Context, jetstream.JetStream) jetstream.StreamConfig) jetstream.StreamConfig {
			nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(HubUser, b.hubSecret))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return f(ctx, js)
		}
		info := func(ctx context.Context, js jetstream.JetStream) jetstream.StreamConfig {
			s, err := js.Stream(ctx, mqttMsgsStream)
			if err != nil {
				t.Fatal(err)
			}
			return s.CachedInfo().Config
		}

		b := start()
		got := stream(b, info)
		if got.Storage != jetstream.MemoryStorage || got.MaxBytes != MQTTMessagesMaxBytes || got.Discard != jetstream.DiscardOld ||
			len(got.Subjects) != 1 || got.Subjects[0] != mqttMsgsSubject || got.Retention != jetstream.InterestPolicy {
			t.Fatalf("auth %v: stream %+v, want in memory, %d bytes at most, discard old, interest retention on %s",
				auth, got, MQTTMessagesMaxBytes, mqttMsgsSubject)
		}
		// Put it on disk, as nats-server makes it by itself.
		stream(b, func(ctx context.Context, js jetstream.JetStream) jetstream.StreamConfig {
			if err := js.DeleteStream(ctx, mqttMsgsStream); err != nil {
				t.Fatal(err)
			}
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: mqttMsgsStream, Subjects: []string{mqttMsgsSubject},
				Storage: jetstream.FileStorage, Retention: jetstream.InterestPolicy})
			if err != nil {
				t.Fatal(err)
			}
			return s.CachedInfo().Config
		})
		b.Shutdown()

		b = start()
		if got := stream(b, info); got.Storage != jetstream.MemoryStorage || got.MaxBytes != MQTTMessagesMaxBytes {
			t.Errorf("auth %v: after a restart on a stream on disk: %+v, want it in memory", auth, got)
		}
		b.Shutdown()
	}
}
