package proto_test

import (
	"testing"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"google.golang.org/protobuf/proto"
)

func TestDesiredStateRoundTrip(t *testing.T) {
	in := &agentv1.DesiredState{
		Generation: 7,
		Deployments: []*agentv1.DeploymentSpec{{
			Name: "digits",
			Model: &agentv1.ModelRef{
				Name: "digits", Version: 3, Sha256: "ab", Size: 300000, ChunkSize: 262144,
				ChunkSha256: []string{"c0", "c1"},
			},
			Options: &agentv1.RuntimeOptions{MaxBatchSize: 8},
		}},
	}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out agentv1.DesiredState
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, &out) {
		t.Fatalf("round trip changed the message:\n in %v\nout %v", in, &out)
	}
}

// FuzzDecode checks that no payload an agent or the broker hands us makes
// the generated decoders panic.
func FuzzDecode(f *testing.F) {
	b, _ := proto.Marshal(&agentv1.ReportedState{ObservedGeneration: 3, Deployments: []*agentv1.DeploymentStatus{{Name: "d", State: agentv1.DeploymentStatus_STATE_SERVING}}})
	f.Add(b)
	f.Add([]byte{0x0a, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []proto.Message{&agentv1.DesiredState{}, &agentv1.ReportedState{}, &agentv1.ChunkRequest{}, &agentv1.ChunkResponse{}, &agentv1.Presence{}} {
			_ = proto.Unmarshal(data, m)
		}
	})
}
