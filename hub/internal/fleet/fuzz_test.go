package fleet

import (
	"context"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// message is an mqtt.Message built in memory.
type message struct {
	topic    string
	payload  []byte
	retained bool
}

func (m *message) Duplicate() bool   { return false }
func (m *message) Qos() byte         { return 1 }
func (m *message) Retained() bool    { return m.retained }
func (m *message) Topic() string     { return m.topic }
func (m *message) MessageID() uint16 { return 1 }
func (m *message) Payload() []byte   { return m.payload }
func (m *message) Ack()              {}

// FuzzDispatch feeds arbitrary topics and payloads (what any agent can
// publish) to the fleet's dispatcher: it must never panic, must hand the
// observer only messages from its protocol topics, and must queue at most
// one chunk job per message.
func FuzzDispatch(f *testing.F) {
	rep, _ := proto.Marshal(&agentv1.ReportedState{ObservedGeneration: 3, Deployments: []*agentv1.DeploymentStatus{{Name: "m"}}})
	pres, _ := proto.Marshal(&agentv1.Presence{Status: agentv1.Presence_STATUS_ONLINE})
	req, _ := proto.Marshal(&agentv1.ChunkRequest{Sha256: "ab", Index: 1, Count: 1 << 31})
	for _, leaf := range []string{topics.Reported, topics.Presence, topics.ChunksRequest, topics.Desired, "x"} {
		for _, p := range [][]byte{rep, pres, req, nil, {0xff, 0xff}} {
			f.Add(topics.Topic("edge-1", leaf), p, false)
			f.Add(topics.Topic("edge-1", leaf), p, true)
		}
	}
	f.Add("atelier/v1/agents/../reported", rep, false)
	f.Fuzz(func(t *testing.T, topic string, payload []byte, retained bool) {
		obs := newObserver()
		fl, err := New(Config{Broker: "tcp://127.0.0.1:1", QueueSize: 1}, emptyBlobs{}, obs, nil)
		if err != nil {
			t.Fatal(err)
		}
		fl.dispatch(context.Background(), &message{topic: topic, payload: payload, retained: retained})
		_, leaf, ok := topics.Parse(topic)
		n := 0
		for _, rs := range obs.reported {
			n += len(rs)
		}
		for _, ps := range obs.presence {
			n += len(ps)
		}
		if n > 1 || (n == 1 && (!ok || (leaf != topics.Reported && leaf != topics.Presence))) {
			t.Fatalf("observer got %d messages for topic %q", n, topic)
		}
		if len(fl.work) > 1 || (len(fl.work) == 1 && (leaf != topics.ChunksRequest || retained)) {
			t.Fatalf("%d chunk jobs queued for topic %q (retained %v)", len(fl.work), topic, retained)
		}
	})
}

// emptyBlobs is a hub.Blobs with nothing in it; dispatch never reads blobs.
type emptyBlobs struct{}

func (emptyBlobs) Put(context.Context, io.Reader, int64) (hub.Blob, error) {
	return hub.Blob{}, hub.ErrInvalid
}

func (emptyBlobs) Open(context.Context, string) (io.ReadSeekCloser, hub.Blob, error) {
	return nil, hub.Blob{}, hub.ErrNotFound
}
