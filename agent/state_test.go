package agent

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/atelier-ml/atelier/agent/internal/testhub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

func TestValidateDesired(t *testing.T) {
	ref := testhub.Ref("m", 1, []byte("model bytes"), 4)
	for _, tc := range []struct {
		name string
		d    *agentv1.DesiredState
	}{
		{"nil", nil},
		{"generation 0", &agentv1.DesiredState{}},
		{"empty name", &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Model: ref}}}},
		{"slash in name", &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Name: "a/b", Model: ref}}}},
		{"duplicate", &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Name: "a", Model: ref}, {Name: "a", Model: ref}}}},
		{"no model", &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Name: "a"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateDesired(tc.d); !errors.Is(err, ErrInvalidDesired) {
				t.Fatalf("err = %v, want ErrInvalidDesired", err)
			}
		})
	}
	ok := &agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{{Name: "iris.v2_a-b", Model: ref}}}
	if err := ValidateDesired(ok); err != nil {
		t.Fatal(err)
	}
}

func TestServingRecordRoundTrip(t *testing.T) {
	in := map[string]served{"a": {1, testhub.Ref("m", 1, []byte("x"), 1).Sha256}, "b": {7, testhub.Ref("m", 1, []byte("y"), 1).Sha256}}
	out, err := decodeServing(encodeServing(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out["a"] != in["a"] || out["b"] != in["b"] {
		t.Fatalf("round trip: %v -> %v", in, out)
	}
	if _, err := decodeServing([]byte{0x0a, 0x02, 0x0a}); !errors.Is(err, ErrInvalidServing) {
		t.Fatalf("truncated record: %v", err)
	}
}

// FuzzDecodeDesired: arbitrary bytes (from the broker or a damaged
// desired.pb) never panic; whatever is accepted is valid and survives the
// agent's own encode/decode round trip unchanged.
func FuzzDecodeDesired(f *testing.F) {
	ref := testhub.Ref("m", 3, []byte("some model bytes"), 5)
	good, _ := proto.Marshal(&agentv1.DesiredState{Generation: 4, Deployments: []*agentv1.DeploymentSpec{{Name: "iris", Model: ref}}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDesired(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidDesired) {
				t.Fatalf("error %v does not wrap ErrInvalidDesired", err)
			}
			return
		}
		if err := ValidateDesired(d); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := decodeDesired(enc)
		if err != nil || !proto.Equal(d, d2) {
			t.Fatalf("round trip changed the state: %v", err)
		}
	})
}

// FuzzDecodeServing: a damaged serving.pb never panics, and anything
// accepted re-encodes to a record that decodes to the same map.
func FuzzDecodeServing(f *testing.F) {
	f.Add(encodeServing(map[string]served{"iris": {2, testhub.Ref("m", 1, []byte("x"), 1).Sha256}}))
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0x2f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeServing(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidServing) {
				t.Fatalf("error %v does not wrap ErrInvalidServing", err)
			}
			return
		}
		m2, err := decodeServing(encodeServing(m))
		if err != nil || len(m2) != len(m) {
			t.Fatalf("round trip: %v, %d vs %d", err, len(m2), len(m))
		}
		for k, v := range m {
			if m2[k] != v {
				t.Fatalf("round trip changed %q: %v vs %v", k, v, m2[k])
			}
		}
	})
}
