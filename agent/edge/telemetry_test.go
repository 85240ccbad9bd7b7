package edge

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/agent/internal/testhub"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// TestDaemonTelemetry runs the whole edge agent: requests scored over its
// real HTTP endpoint reach a hub subscriber as telemetry of the deployment
// (counts, the digest that answered, input summaries without the
// registry's warm-up inference), acknowledged over real MQTT.
func TestDaemonTelemetry(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")

	var mu sync.Mutex
	batches := map[uint64]*agentv1.TelemetryBatch{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL).SetClientID("telemetry-sink").
		SetUsername(testhub.Username).SetPassword(testhub.Password).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(topics.Topic("edge-1", topics.Telemetry), 1, func(c mqtt.Client, m mqtt.Message) {
		var u agentv1.TelemetryUpload
		if err := proto.Unmarshal(m.Payload(), &u); err != nil || len(u.Batches) == 0 {
			t.Errorf("bad upload: %v", err)
			return
		}
		mu.Lock()
		for _, b := range u.Batches {
			batches[b.Seq] = b
		}
		mu.Unlock()
		ack, _ := proto.Marshal(&agentv1.TelemetryAck{ThroughSeq: u.Batches[len(u.Batches)-1].Seq})
		c.Publish(topics.Topic("edge-1", topics.TelemetryAck), 1, false, ack)
	}); !tok.WaitTimeout(guard) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	cfg := DaemonConfig{Agent: agent.Config{
		ID: "edge-1", DataDir: t.TempDir(), Broker: b.URL, Username: testhub.Username, Password: testhub.Password,
		Endpoint: endpoint, Capabilities: agent.DetectCapabilities("edge", "test", "test"),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RetryInterval: time.Hour,
		TelemetryInterval: time.Second, TelemetryAckTimeout: time.Second,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, ln, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	t.Cleanup(func() { cancel(); <-done })

	v1 := hub.AddModel("mlp", 1, onnxtest.MLP(in, hidden, out, 1), 256)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", serving(endpoint, "digits", 1))
	const n = 7
	for range n {
		if code, _ := inferHTTP(t, endpoint, "digits"); code != 200 {
			t.Fatalf("infer: HTTP %d", code)
		}
	}

	deadline := time.After(guard)
	for {
		mu.Lock()
		var ok, feats uint64
		var mean0 float64
		for _, b := range batches {
			for _, d := range b.Deployments {
				if d.Name != "digits" {
					continue
				}
				if d.ModelVersion != 1 || d.ModelSha256 != v1.GetSha256() {
					t.Fatalf("telemetry of digits v%d sha %q, want v1 sha %s", d.ModelVersion, d.ModelSha256, v1.GetSha256())
				}
				ok += d.Requests["ok"]
				for _, f := range d.Features {
					if f.Input == "input" && f.Index == 0 {
						feats += f.Count
						mean0 = f.Mean
					}
				}
			}
		}
		mu.Unlock()
		if ok > n || feats > n {
			t.Fatalf("hub counted %d ok requests and %d samples of input[0], want %d (the warm-up must not count)", ok, feats, n)
		}
		if ok == n && feats == n {
			if mean0 != float64(x[0]) {
				t.Fatalf("input[0] mean %v, want %v (every request sends it)", mean0, x[0])
			}
			return
		}
		select {
		case <-deadline:
			t.Fatalf("hub has %d ok requests and %d input samples, want %d", ok, feats, n)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
