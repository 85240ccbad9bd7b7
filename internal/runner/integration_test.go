package runner_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/internal/runner"
	"github.com/atelier-ml/atelier/testbench"
)

var _ runner.Hub = (*client.Client)(nil)

// startHub runs a real hub on loopback (free ports, data in a temp dir)
// until the test ends, and returns a client for it with a workspace "ws".
func startHub(t *testing.T) (*client.Client, string) {
	t.Helper()
	url := testbench.StartHub(t, testbench.HubConfig(t)).URL
	c := client.New(url)
	if _, err := c.CreateWorkspace(context.Background(), "ws", ""); err != nil {
		t.Fatal(err)
	}
	return c, url
}

// TestSubmitRealHub runs a real child process through Submit against a
// real hub and checks what the hub stored.
func TestSubmitRealHub(t *testing.T) {
	c, url := startHub(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "train.sh"), []byte(`echo "hub=$ATELIER_HUB run=$ATELIER_RUN_ID epochs=$ATELIER_PARAM_EPOCHS"
echo ::metric name=loss value=0.5 step=1
echo ::metric name=loss value=0.25
echo '::param name=arch value="mlp 2x"'
echo warn >&2
mkdir -p outputs; echo hi > outputs/a.txt
head -c 150000 /dev/zero | tr '\0' x; echo
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code, err := runner.Submit(ctx, c, runner.Options{
		Workspace: "ws", Experiment: "exp", Name: "real", Dir: dir, HubURL: url,
		Command: []string{"sh", "train.sh"}, Params: map[string]string{"epochs": "3"}, Tags: map[string]string{"k": "v"},
		TempDir: t.TempDir(),
	}, &stdout, &stderr, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v; stderr:\n%s", code, err, stderr.String())
	}
	runs, err := c.ListRuns(ctx, "ws", client.RunQuery{})
	if err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
	run, err := c.GetRun(ctx, "ws", runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != hub.StatusCompleted || run.ExitCode == nil || *run.ExitCode != 0 || run.Experiment != "exp" || run.Name != "real" {
		t.Errorf("run = %+v", run)
	}
	if want := map[string]string{"epochs": "3", "arch": "mlp 2x"}; !reflect.DeepEqual(run.Params, want) {
		t.Errorf("params = %v, want %v", run.Params, want)
	}
	if run.Tags["k"] != "v" {
		t.Errorf("tags = %v", run.Tags)
	}
	if !reflect.DeepEqual(run.Command, []string{"sh", "train.sh"}) {
		t.Errorf("command = %q", run.Command)
	}
	pts, err := c.GetMetrics(ctx, "ws", run.ID, "loss")
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	var vals []float64
	for _, p := range pts {
		steps, vals = append(steps, p.Step), append(vals, p.Value)
	}
	if !reflect.DeepEqual(steps, []int64{1, 1}) || !reflect.DeepEqual(vals, []float64{0.5, 0.25}) {
		t.Errorf("loss series steps %v values %v, want steps [1 1] (the second point is the second of its name) values [0.5 0.25]", steps, vals)
	}
	var logs []string
	var long []int
	if err := c.StreamLogs(ctx, "ws", run.ID, 0, false, func(l hub.LogLine) error {
		if strings.HasPrefix(l.Text, "xxx") {
			long = append(long, len(l.Text))
			return nil
		}
		logs = append(logs, l.Stream+":"+l.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A 150,000-byte line is stored as 64 KiB pieces, not dropped.
	if !reflect.DeepEqual(long, []int{65536, 65536, 150000 - 2*65536}) {
		t.Errorf("long line stored as pieces of %v bytes", long)
	}
	wantOut := "stdout:hub=" + url + " run=" + run.ID + " epochs=3"
	if len(logs) != 5 || !contains(logs, wantOut) || !contains(logs, "stderr:warn") || !contains(logs, "stdout:::metric name=loss value=0.5 step=1") {
		t.Errorf("logs = %q", logs)
	}
	var art bytes.Buffer
	if err := c.GetArtifact(ctx, "ws", run.ID, "a.txt", &art); err != nil || art.String() != "hi\n" {
		t.Errorf("artifact a.txt = %q, %v", art.String(), err)
	}
	var snap, packed bytes.Buffer
	if err := c.GetSnapshot(ctx, "ws", run.ID, &snap); err != nil {
		t.Fatal(err)
	}
	if _, err := runner.Pack(ctx, dir, &packed, runner.Limits{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap.Bytes(), packed.Bytes()) {
		t.Errorf("stored snapshot (%d bytes) differs from the pack of the directory (%d bytes)", snap.Len(), packed.Len())
	}
	if !strings.Contains(stderr.String(), "run "+run.ID+" completed") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestSubmitSampleTrainer submits the sample training program
// (testbench/sample/train, a nested module) with `go run .` against a real
// hub: the end-to-end path a user takes.
func TestSubmitSampleTrainer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run the sample: %v", err)
	}
	c, url := startHub(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	code, err := runner.Submit(ctx, c, runner.Options{
		Workspace: "ws", Experiment: "digits", Dir: filepath.Join("..", "..", "testbench", "sample", "train"), HubURL: url,
		Command: []string{goBin, "run", "."}, Params: map[string]string{"epochs": "2", "hidden": "8"},
		TempDir: t.TempDir(),
	}, &stdout, &stderr, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v; stderr:\n%s", code, err, stderr.String())
	}
	runs, err := c.ListRuns(ctx, "ws", client.RunQuery{Experiment: "digits"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
	run := runs[0]
	if run.Status != hub.StatusCompleted {
		t.Fatalf("status %s: %s", run.Status, run.Error)
	}
	for k, v := range map[string]string{"epochs": "2", "hidden": "8", "lr": "0.05", "batch_size": "32"} {
		if run.Params[k] != v {
			t.Errorf("param %s = %q, want %q (params %v)", k, run.Params[k], v, run.Params)
		}
	}
	for _, m := range []string{"loss", "accuracy", "train_accuracy", "test_accuracy"} {
		if _, ok := run.Metrics[m]; !ok {
			t.Errorf("metric %s missing: %v", m, run.Metrics)
		}
	}
	loss, err := c.GetMetrics(ctx, "ws", run.ID, "loss")
	if err != nil || len(loss) != 2 {
		t.Errorf("loss series = %v, %v; want 2 epochs", loss, err)
	}
	var model bytes.Buffer
	if err := c.GetArtifact(ctx, "ws", run.ID, "model.onnx", &model); err != nil || model.Len() == 0 {
		t.Errorf("model.onnx: %d bytes, %v", model.Len(), err)
	}
	// The sample's .gitignore leaves outputs/ out of the snapshot.
	var snap bytes.Buffer
	if err := c.GetSnapshot(ctx, "ws", run.ID, &snap); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&snap)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if strings.HasPrefix(h.Name, "outputs/") {
			t.Errorf("snapshot holds %s although the sample's .gitignore excludes outputs/", h.Name)
		}
	}
	if !contains(names, "main.go") || !contains(names, "data/digits.csv.gz") {
		t.Errorf("snapshot entries %q miss main.go or data/digits.csv.gz", names)
	}
}

// lockedBuffer is a buffer safe for concurrent writes, with a way to wait
// for some text to appear.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until buf holds text. The bound only keeps a broken test
// from hanging; nothing is asserted about how long it takes.
func waitFor(t *testing.T, buf *lockedBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(buf.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after a minute; got:\n%s", text, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSubmitSurvivesHubRestart stops the real hub while the command runs,
// lets the command print while it is down, then starts the hub again on
// the same address and data: the command is never disturbed and every line
// ends up stored, in order.
func TestSubmitSurvivesHubRestart(t *testing.T) {
	cfg := testbench.HubConfig(t)
	data := cfg.Data
	hub1 := testbench.StartHub(t, cfg)
	addr, err := server.ReadAddrs(data)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.HTTP
	c := client.New(url)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "ws", ""); err != nil {
		t.Fatal(err)
	}

	flags := t.TempDir()
	down, up := filepath.Join(flags, "down"), filepath.Join(flags, "up")
	script := `echo before
while [ ! -e "$DOWN" ]; do sleep 0.01; done
echo during1
echo '::metric name=m value=1'
echo during2 >&2
while [ ! -e "$UP" ]; do sleep 0.01; done
echo after
`
	var stdout, stderr lockedBuffer
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := runner.Submit(ctx, c, runner.Options{
			Workspace: "ws", Experiment: "outage", Dir: t.TempDir(), HubURL: url,
			Command: []string{"sh", "-c", script}, Env: append(os.Environ(), "DOWN="+down, "UP="+up),
			TempDir: t.TempDir(), MaxBackoff: 50 * time.Millisecond,
		}, &stdout, &stderr, nil)
		res <- result{code, err}
	}()

	waitFor(t, &stdout, "before\n")
	hub1.Stop()
	if err := os.WriteFile(down, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &stdout, "during1\n")
	waitFor(t, &stderr, "hub unreachable")
	// Same data, same HTTP address.
	cfg2 := cfg
	cfg2.HTTP = addr.HTTP
	testbench.StartHub(t, cfg2)
	if err := os.WriteFile(up, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.code != 0 || r.err != nil {
		t.Fatalf("Submit = %d, %v; stderr:\n%s", r.code, r.err, stderr.String())
	}
	runs, err := c.ListRuns(ctx, "ws", client.RunQuery{Experiment: "outage"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
	if runs[0].Status != hub.StatusCompleted || runs[0].Metrics["m"] != 1 {
		t.Errorf("run %s metrics %v, want completed with m=1", runs[0].Status, runs[0].Metrics)
	}
	var got []string
	if err := c.StreamLogs(ctx, "ws", runs[0].ID, 0, false, func(l hub.LogLine) error {
		got = append(got, l.Stream+":"+l.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range got {
		if strings.HasPrefix(l, "stdout:") {
			out = append(out, l)
		}
	}
	want := []string{"stdout:before", "stdout:during1", "stdout:::metric name=m value=1", "stdout:after"}
	if !reflect.DeepEqual(out, want) || !contains(got, "stderr:during2") {
		t.Errorf("logs = %q, want stdout %q and stderr:during2", got, want)
	}
	if !strings.Contains(stderr.String(), "hub reachable again") {
		t.Errorf("stderr = %q, want the recovery reported", stderr.String())
	}
}

// TestSubmitRealHubRefusalIsNotRetried: the real client maps a 409 (a
// write-once param changed by the command) to hub.ErrConflict, which
// Submit reports at once instead of retrying; the run still completes.
func TestSubmitRealHubRefusalIsNotRetried(t *testing.T) {
	c, url := startHub(t)
	ctx := context.Background()
	var stderr lockedBuffer
	code, err := runner.Submit(ctx, c, runner.Options{
		Workspace: "ws", Experiment: "conflict", Dir: t.TempDir(), HubURL: url,
		Command: []string{"sh", "-c", "echo '::param name=lr value=0.5'"}, Params: map[string]string{"lr": "0.1"},
		TempDir: t.TempDir(),
	}, io.Discard, &stderr, nil)
	if code != 0 || !errors.Is(err, runner.ErrRecording) || !strings.Contains(err.Error(), `hub refused param "lr"`) {
		t.Fatalf("Submit = %d, %v; want 0 and ErrRecording naming the refused param", code, err)
	}
	if strings.Contains(stderr.String(), "unreachable") {
		t.Errorf("a refusal was treated as an outage: %s", stderr.String())
	}
	runs, err := c.ListRuns(ctx, "ws", client.RunQuery{Experiment: "conflict"})
	if err != nil || len(runs) != 1 || runs[0].Status != hub.StatusCompleted || runs[0].Params["lr"] != "0.1" {
		t.Fatalf("runs = %+v, %v; want one completed run with lr=0.1", runs, err)
	}
}
