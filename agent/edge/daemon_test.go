package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/agent/internal/testhub"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

const guard = 30 * time.Second // deadlock guard only, never a speed assertion

// startDaemon runs Run on a fresh loopback listener; stop ends it and
// checks it returned nil.
func startDaemon(t *testing.T, brokerURL, dataDir string) (endpoint string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint = "http://" + ln.Addr().String()
	cfg := DaemonConfig{Agent: agent.Config{
		ID: "edge-1", DataDir: dataDir, Broker: brokerURL, Username: testhub.Username, Password: testhub.Password,
		Endpoint: endpoint, Capabilities: agent.DetectCapabilities("edge", "test", "test"),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RetryInterval: time.Hour,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, ln, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(guard):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return endpoint, stop
}

// inferHTTP posts x to the deployment over the agent's real HTTP endpoint
// and returns the status code and the output data.
func inferHTTP(t *testing.T, endpoint, deployment string) (int, []float32) {
	t.Helper()
	body := fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,%d],"data":[0.5,-1,2,0.25]}]}`, in)
	resp, err := http.Post(endpoint+"/v2/models/"+deployment+"/infer", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var r struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Outputs) != 1 {
		t.Fatalf("infer answer %s: %v", b, err)
	}
	return resp.StatusCode, r.Outputs[0].Data
}

func wantOutput(t *testing.T, got []float32, seed int64) {
	t.Helper()
	want := onnxtest.MLPOutput(in, hidden, out, seed, x)
	if len(got) != len(want) {
		t.Fatalf("output %v, want %v (model of seed %d)", got, want, seed)
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Fatalf("output %v, want %v (model of seed %d)", got, want, seed)
		}
	}
}

func deployment(name string, ref *agentv1.ModelRef) *agentv1.DeploymentSpec {
	return &agentv1.DeploymentSpec{Name: name, Model: ref}
}

// serving matches a report where deployment serves version, with the endpoint.
func serving(endpoint, name string, version uint32) func(*agentv1.ReportedState) bool {
	return func(r *agentv1.ReportedState) bool {
		if r.GetEndpoint() != endpoint {
			return false
		}
		for _, d := range r.GetDeployments() {
			if d.GetName() == name && d.GetState() == agentv1.DeploymentStatus_STATE_SERVING && d.GetModelVersion() == version {
				return true
			}
		}
		return false
	}
}

// TestDaemonServesDesiredState runs the whole edge agent against the real
// embedded broker: desired state → download → ONNX Runtime → real HTTP;
// hot swap; a corrupt model keeps the previous version serving; a restart
// with the broker down serves the last good deployment from disk; removal.
func TestDaemonServesDesiredState(t *testing.T) {
	b := testhub.StartBroker(t)
	hub := testhub.NewHub(t, b.URL, "edge-1")
	dir := t.TempDir()
	endpoint, stop := startDaemon(t, b.URL, dir)

	v1 := hub.AddModel("mlp", 1, onnxtest.MLP(in, hidden, out, 1), 256)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 1, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v1)}})
	hub.WaitReported(guard, "digits v1 serving", serving(endpoint, "digits", 1))
	code, got := inferHTTP(t, endpoint, "digits")
	if code != http.StatusOK {
		t.Fatalf("infer v1: HTTP %d", code)
	}
	wantOutput(t, got, 1)

	v2 := hub.AddModel("mlp", 2, onnxtest.MLP(in, hidden, out, 2), 256)
	hub.PublishDesired(&agentv1.DesiredState{Generation: 2, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v2)}})
	hub.WaitReported(guard, "digits v2 serving", serving(endpoint, "digits", 2))
	_, got = inferHTTP(t, endpoint, "digits")
	wantOutput(t, got, 2)

	// A model that verifies (its digest is right) but is not ONNX: load
	// fails, the agent reports it, version 2 keeps serving.
	junk := []byte("definitely not an onnx model, but hashed correctly")
	v3 := hub.AddModel("mlp", 3, junk, 256)
	sum := sha256.Sum256(junk)
	if v3.GetSha256() != hex.EncodeToString(sum[:]) {
		t.Fatal("testhub ref digest mismatch")
	}
	hub.PublishDesired(&agentv1.DesiredState{Generation: 3, Deployments: []*agentv1.DeploymentSpec{deployment("digits", v3)}})
	failed := hub.WaitReported(guard, "digits v3 failed", func(r *agentv1.ReportedState) bool {
		for _, d := range r.GetDeployments() {
			if d.GetName() == "digits" && d.GetState() == agentv1.DeploymentStatus_STATE_FAILED {
				return r.GetObservedGeneration() == 3
			}
		}
		return false
	})
	if d := failed.GetDeployments()[0]; d.GetModelVersion() != 2 || d.GetError() == "" {
		t.Errorf("failed report %v: want model_version 2 still serving and an error", d)
	}
	_, got = inferHTTP(t, endpoint, "digits")
	wantOutput(t, got, 2)

	// Restart with the broker down: the last good version serves from disk.
	stop()
	b.Stop()
	endpoint, stop = startDaemon(t, b.URL, dir)
	waitReady(t, endpoint, "digits")
	_, got = inferHTTP(t, endpoint, "digits")
	wantOutput(t, got, 2)

	// The broker returns; removing the deployment unloads it.
	b.Restart()
	hub.ClearReported()
	hub.PublishDesired(&agentv1.DesiredState{Generation: 4})
	hub.WaitReported(guard, "nothing deployed", func(r *agentv1.ReportedState) bool {
		return r.GetObservedGeneration() == 4 && len(r.GetDeployments()) == 0 && r.GetEndpoint() == endpoint
	})
	if code, _ := inferHTTP(t, endpoint, "digits"); code != http.StatusNotFound {
		t.Errorf("infer after removal: HTTP %d, want 404", code)
	}
	stop()
}

// waitReady polls GET /v2/models/{name}/ready until 200 (guarded).
func waitReady(t *testing.T, endpoint, name string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		resp, err := http.Get(endpoint + "/v2/models/" + name + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after %v (last: %v)", name, endpoint, guard, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
