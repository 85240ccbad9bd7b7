package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
	"github.com/atelier-ml/atelier/testbench/sample"
)

// scoreRows is how many held-out rows each request scores.
const scoreRows = 32

// TestEdgeDeploymentLifecycle is issue 4 end to end with the real
// binaries: register two trained versions, enroll an agent with a join
// token, deploy v1 and check the endpoint's outputs against ONNX Runtime
// in-process, update to v2 under continuous traffic with no failed request,
// kill -9 the hub and check the agent keeps serving, restart the agent with
// no hub and check it serves v2 from disk, restart the hub and check the
// agent reconnects and the deployment reads serving again.
func TestEdgeDeploymentLifecycle(t *testing.T) {
	began := time.Now()
	root := repoRoot(t)
	atelier, agentBin := buildBinaries(t, root)
	t.Logf("binaries built in %s", time.Since(began).Round(time.Millisecond))

	// Two different models: the sample program with different seeds and sizes.
	models := trainTwo(t, root)
	pixels := heldoutPixels(t, filepath.Join(filepath.Dir(models[0]), "heldout.csv"), scoreRows)
	want := [2]map[string][]float64{scoreInProcess(t, models[0], pixels), scoreInProcess(t, models[1], pixels)}
	if match(want[0], want[1]) == nil {
		t.Fatal("the two trained models give the same outputs: the update could not be told apart")
	}

	hubData := filepath.Join(t.TempDir(), "hub")
	// The broker's port is chosen first so agents can be told to reach it
	// by another name (--advertise-mqtt localhost:PORT).
	mqttPort := freePort(t)
	advertised := fmt.Sprintf("localhost:%d", mqttPort)
	hubProc, addrs := startHub(t, atelier, hubData,
		server.Addrs{HTTP: "127.0.0.1:0", MQTT: fmt.Sprintf("127.0.0.1:%d", mqttPort), NATS: "127.0.0.1:0"}, "--advertise-mqtt", advertised)
	hubURL := "http://" + addrs.HTTP
	const ws = "e2e"
	run := func(args ...string) []byte { return cli(t, atelier, hubURL, ws, args...) }
	run("workspace", "create", ws)
	for _, m := range models {
		run("model", "register", "digits", "--file", m)
	}
	var tok hub.JoinToken
	cliJSON(t, atelier, hubURL, ws, &tok, "agent", "token", "create")

	agentData := filepath.Join(t.TempDir(), "agent")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + listen
	// Every request sent to the agent's endpoint is counted here: at the
	// end the hub's telemetry must hold exactly this many, although the hub
	// is killed with -9 mid-stream and the agent restarted while it is down.
	requests := 0
	agentProc := start(t, "agent", agentBin, "run", "--hub", hubURL, "--join-token", tok.Token, "--data", agentData, "--listen", listen,
		"--telemetry-interval", "1s")
	var creds agent.Credentials
	waitFor(t, 20*time.Second, "agent enrollment", func() error {
		if agentProc.exited() {
			t.Fatalf("agent exited: %v", agentProc.err)
		}
		b, err := os.ReadFile(filepath.Join(agentData, agent.CredentialsFile))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &creds)
	})
	id := creds.AgentID
	if !strings.HasSuffix(creds.MQTTURL, "://"+advertised) {
		t.Fatalf("enrollment gave broker %q, want the advertised %s", creds.MQTTURL, advertised)
	}

	run("deploy", "create", "digits", "--model", "digits:1", "--target", id)
	waitServing(t, atelier, hubURL, ws, id, 1, time.Time{})
	requests++
	got, err := score(base, pixels)
	if err != nil {
		t.Fatal(err)
	}
	if err := match(got, want[0]); err != nil {
		t.Fatalf("v1 served by the agent differs from ONNX Runtime in-process: %v", err)
	}
	t.Logf("v1 serving and equal to in-process ONNX Runtime at %s", time.Since(began).Round(time.Millisecond))

	// Update under continuous traffic.
	load := startLoad(base, pixels, want)
	run("deploy", "update", "digits", "--model", "digits:2")
	waitServing(t, atelier, hubURL, ws, id, 2, time.Time{})
	waitFor(t, 10*time.Second, "the endpoint to answer with v2", func() error {
		if load.counts().v2 == 0 {
			return fmt.Errorf("no v2 answer yet (%+v)", load.counts())
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	c := load.stop()
	requests += c.total()
	t.Logf("during the update: %+v", c)
	if c.failed != 0 || c.neither != 0 || c.backToV1 != 0 {
		t.Fatalf("during the update: %d failed requests, %d answers equal to neither version, %d v1 answers after a v2 one (first error: %v)",
			c.failed, c.neither, c.backToV1, c.firstErr)
	}
	if c.v1 == 0 {
		t.Errorf("no request was answered by v1 during the update: the load did not overlap the swap")
	}

	// The hub dies under traffic, with telemetry uploads in flight; the
	// agent keeps serving.
	load = startLoad(base, pixels, want)
	time.Sleep(1500 * time.Millisecond)
	hubProc.kill()
	time.Sleep(500 * time.Millisecond)
	c = load.stop()
	requests += c.total()
	if c.failed != 0 || c.v2 != c.total() {
		t.Fatalf("around kill -9 of the hub: %+v, want only v2 answers", c)
	}
	for i := range 3 {
		requests++
		got, err := score(base, pixels)
		if err != nil {
			t.Fatalf("score %d after kill -9 of the hub: %v", i, err)
		}
		if err := match(got, want[1]); err != nil {
			t.Fatalf("after kill -9 of the hub the agent serves something else than v2: %v", err)
		}
	}

	// The agent restarts with the hub still down: it serves v2 from disk.
	agentProc.stop(t, 15*time.Second)
	agentProc = start(t, "agent (restart)", agentBin, "run", "--hub", hubURL, "--data", agentData, "--listen", listen,
		"--telemetry-interval", "1s")
	waitFor(t, 20*time.Second, "the restarted agent to serve digits", func() error {
		if agentProc.exited() {
			t.Fatalf("restarted agent exited: %v", agentProc.err)
		}
		resp, err := http.Get(base + "/v2/models/digits/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
	for range 4 {
		requests++
		got, err = score(base, pixels)
		if err != nil {
			t.Fatalf("restarted agent, hub down: %v", err)
		}
	}
	if err := match(got, want[1]); err != nil {
		t.Fatalf("restarted agent with the hub down serves something else than v2: %v", err)
	}

	// The hub comes back on the same data and ports; the agent reconnects.
	restarted := time.Now()
	hubProc, again := startHub(t, atelier, hubData, addrs, "--advertise-mqtt", advertised)
	if again != addrs {
		t.Fatalf("restarted hub bound %+v, want %+v", again, addrs)
	}
	waitServing(t, atelier, hubURL, ws, id, 2, restarted)
	requests++
	got, err = score(base, pixels)
	if err != nil {
		t.Fatal(err)
	}
	if err := match(got, want[1]); err != nil {
		t.Fatalf("after the hub's restart: %v", err)
	}

	// Nothing lost, nothing counted twice: the spool drained after the
	// restarts and the hub deduplicated what was sent again.
	waitTelemetry(t, atelier, hubURL, ws, requests)
	time.Sleep(3 * time.Second) // a late duplicate would show up here
	waitTelemetry(t, atelier, hubURL, ws, requests)
	t.Logf("telemetry: the hub counts exactly the %d requests sent", requests)

	agentProc.stop(t, 15*time.Second)
	hubProc.stop(t, 15*time.Second)
	t.Logf("lifecycle done in %s", time.Since(began).Round(time.Millisecond))
}

// waitServing polls `deploy show` until agent id serves version v of
// digits and, when seenAfter is set, `agent show` reports the agent online
// with a message received after seenAfter. The 60 s bound covers the
// agent's reconnect backoff (at most 30 s) with room to spare.
func waitServing(t *testing.T, bin, hubURL, ws, id string, v int, seenAfter time.Time) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("agent %s serving digits:%d", id, v), func() error {
		if !seenAfter.IsZero() {
			var a hub.Agent
			cliJSON(t, bin, hubURL, ws, &a, "agent", "show", id)
			if a.State != hub.AgentOnline || a.LastSeen == nil || !a.LastSeen.After(seenAfter) {
				return fmt.Errorf("agent %s: state %s, last seen %v (hub restarted at %v)", id, a.State, a.LastSeen, seenAfter)
			}
		}
		var d hub.Deployment
		cliJSON(t, bin, hubURL, ws, &d, "deploy", "show", "digits")
		for _, tg := range d.Targets {
			if tg.Agent == id {
				if tg.State == "serving" && tg.ModelVersion == v {
					return nil
				}
				return fmt.Errorf("target %s: %s v%d %s", id, tg.State, tg.ModelVersion, tg.Error)
			}
		}
		return fmt.Errorf("no target %s in %+v", id, d.Targets)
	})
}

// trainTwo builds the sample training program from a temporary copy and
// runs it twice with different parameters; it returns both model paths.
func trainTwo(t *testing.T, root string) [2]string {
	t.Helper()
	src := t.TempDir()
	if err := sample.CopyProgram(src); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "train", ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the sample: %v\n%s", err, out)
	}
	var paths [2]string
	for i, params := range [][]string{
		{"--epochs", "3", "--seed", "1", "--hidden", "16"},
		{"--epochs", "3", "--seed", "2", "--hidden", "24", "--lr", "0.1"},
	} {
		out := filepath.Join(src, fmt.Sprintf("out%d", i+1))
		cmd := exec.Command(filepath.Join(src, "train"), append(params, "--out", out)...)
		cmd.Dir = src
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("train %v: %v\n%s", params, err, b)
		}
		paths[i] = filepath.Join(out, "model.onnx")
	}
	return paths
}

// heldoutPixels reads the first n rows of a held-out CSV (64 pixels, label).
func heldoutPixels(t *testing.T, path string, n int) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var px []float32
	sc := bufio.NewScanner(f)
	for line := 1; line <= n && sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), ",")
		if len(cols) != 65 {
			t.Fatalf("%s line %d: %d columns, want 65", path, line, len(cols))
		}
		for _, c := range cols[:64] {
			v, err := strconv.ParseFloat(c, 32)
			if err != nil {
				t.Fatalf("%s line %d: %v", path, line, err)
			}
			px = append(px, float32(v))
		}
	}
	if len(px) != 64*n {
		t.Fatalf("%s: %d rows, want %d", path, len(px)/64, n)
	}
	return px
}

// scoreInProcess runs the model with ONNX Runtime in this process.
func scoreInProcess(t *testing.T, path string, pixels []float32) map[string][]float64 {
	t.Helper()
	r, err := ort.Open(path, ort.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	outs, err := r.Run(context.Background(), []scoring.Tensor{{
		Name: "pixels", DataType: scoring.Float32, Shape: []int64{int64(len(pixels) / 64), 64}, Data: pixels,
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := map[string][]float64{}
	for _, o := range outs {
		switch d := o.Data.(type) {
		case []float32:
			for _, v := range d {
				res[o.Name] = append(res[o.Name], float64(v))
			}
		case []int64:
			for _, v := range d {
				res[o.Name] = append(res[o.Name], float64(v))
			}
		default:
			t.Fatalf("output %s: unexpected %T", o.Name, o.Data)
		}
	}
	return res
}

var scoreClient = &http.Client{Timeout: 10 * time.Second}

// score posts one v2 infer request for the rows to the agent's endpoint.
func score(base string, pixels []float32) (map[string][]float64, error) {
	resp, err := scoreClient.Post(base+"/v2/models/digits/infer", "application/json", bytes.NewReader(sample.InferBody(pixels)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("infer: %s: %s", resp.Status, body)
	}
	var r struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("infer response: %w: %s", err, body)
	}
	res := map[string][]float64{}
	for _, o := range r.Outputs {
		res[o.Name] = o.Data
	}
	return res, nil
}

// match compares outputs: labels exactly, probabilities within 1e-5 (the
// endpoint may batch rows differently than one in-process run).
func match(got, want map[string][]float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			return fmt.Errorf("output %s: %d values, want %d", name, len(g), len(w))
		}
		for i := range w {
			if math.Abs(g[i]-w[i]) > 1e-5 {
				return fmt.Errorf("output %s[%d] = %v, want %v", name, i, g[i], w[i])
			}
		}
	}
	return nil
}

// load scores continuously and classifies every answer.
type load struct {
	mu   sync.Mutex
	c    loadCounts
	quit chan struct{}
	done chan struct{}
}

type loadCounts struct {
	v1, v2, failed, neither, backToV1 int
	firstErr                          error
}

func startLoad(base string, pixels []float32, want [2]map[string][]float64) *load {
	l := &load{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			got, err := score(base, pixels)
			l.mu.Lock()
			switch {
			case err != nil:
				l.c.failed++
				if l.c.firstErr == nil {
					l.c.firstErr = err
				}
			case match(got, want[1]) == nil:
				l.c.v2++
			case match(got, want[0]) == nil:
				l.c.v1++
				if l.c.v2 > 0 {
					l.c.backToV1++
				}
			default:
				l.c.neither++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// total is how many requests the load sent.
func (c loadCounts) total() int { return c.v1 + c.v2 + c.failed + c.neither }

// waitTelemetry waits until `deploy metrics digits` counts want requests,
// and fails if it ever counts more.
func waitTelemetry(t *testing.T, bin, hubURL, ws string, want int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("the hub's telemetry to count %d requests", want), func() error {
		var m hub.DeploymentMetrics
		cliJSON(t, bin, hubURL, ws, &m, "deploy", "metrics", "digits", "--since", "1h")
		switch got := int(m.Total.Requests); {
		case got > want:
			t.Fatalf("the hub counts %d requests, %d were sent: counted twice (%+v)", got, want, m.Total)
		case got < want:
			return fmt.Errorf("%d of %d requests counted", got, want)
		}
		return nil
	})
}

func (l *load) counts() loadCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

func (l *load) stop() loadCounts {
	close(l.quit)
	<-l.done
	return l.counts()
}
