package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/sqlite"
)

const childEnv = "ATELIER_HUB_DURABILITY_CHILD"

// TestDurabilityChild is the hub process of TestDurabilityKill9: it runs
// only when re-executed with childEnv set to a data directory, and serves
// until it is killed.
func TestDurabilityChild(t *testing.T) {
	data := os.Getenv(childEnv)
	if data == "" {
		return // not a child: nothing to do
	}
	cfg := DefaultConfig()
	cfg.Data = data
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-s.Ready()
		fmt.Printf("READY %s\n", s.Addrs().HTTP)
	}()
	t.Fatal(s.Run(context.Background()))
}

// TestDurabilityKill9 acknowledges writes from a hub in a child process,
// kills it with SIGKILL while writes are in flight, reopens the database
// and checks that every acknowledged write is there, and that no batch is
// half-written.
func TestDurabilityKill9(t *testing.T) {
	data := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurabilityChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+data)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	sc := bufio.NewScanner(out)
	var base string
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			base = "http://" + addr + "/api/v1/workspaces"
			break
		}
	}
	if base == "" {
		t.Fatalf("child hub never became ready: %v", sc.Err())
	}
	go func() { // drain the child's remaining output
		for sc.Scan() {
		}
	}()
	post := func(path string, body any) (*http.Response, error) {
		b, _ := json.Marshal(body)
		return http.Post(base+path, "application/json", bytes.NewReader(b))
	}
	mustPost := func(path string, body any, v any) {
		t.Helper()
		resp, err := post(path, body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s = %d", path, resp.StatusCode)
		}
		if v != nil {
			json.NewDecoder(resp.Body).Decode(v)
		}
	}
	mustPost("", map[string]string{"name": "w"}, nil)
	var run hub.Run
	mustPost("/w/runs", hub.RunCreate{Experiment: "e", Params: map[string]string{"lr": "0.1"}}, &run)

	const batch = 1000
	var (
		mu          sync.Mutex
		ackedSteps  = map[int]bool{} // first step of every acknowledged batch
		ackedLogSeq int64
		wg          sync.WaitGroup
		acks        = make(chan struct{}, 1000)
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				first := (i*2 + w) * batch
				pts := make([]hub.MetricPoint, batch)
				for j := range pts {
					pts[j] = hub.MetricPoint{Name: "loss", Value: float64(first + j), Step: int64(first + j)}
				}
				resp, err := post("/w/runs/"+run.ID+"/metrics", map[string]any{"metrics": pts})
				if err != nil {
					return // the hub is gone
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return
				}
				mu.Lock()
				ackedSteps[first] = true
				mu.Unlock()
				var acc struct {
					LastSeq int64 `json:"last_seq"`
				}
				resp, err = post("/w/runs/"+run.ID+"/logs", map[string]any{"lines": []hub.LogLine{{Text: fmt.Sprint("batch ", first)}}})
				if err != nil {
					return
				}
				json.NewDecoder(resp.Body).Decode(&acc)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return
				}
				mu.Lock()
				ackedLogSeq = max(ackedLogSeq, acc.LastSeq)
				mu.Unlock()
				select {
				case acks <- struct{}{}:
				default:
				}
			}
		}()
	}
	for range 20 {
		<-acks
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()
	wg.Wait()

	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(data, "hub.db")}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.GetRun(context.Background(), "w", run.ID)
	if err != nil {
		t.Fatalf("run lost: %v", err)
	}
	if got.Params["lr"] != "0.1" {
		t.Errorf("params lost: %v", got.Params)
	}
	pts, err := st.Metrics(context.Background(), "w", run.ID, "loss")
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for _, p := range pts {
		have[p.Step] = true
	}
	if len(pts)%batch != 0 {
		t.Errorf("%d points stored: a batch was half-written", len(pts))
	}
	mu.Lock()
	defer mu.Unlock()
	for first := range ackedSteps {
		for j := range batch {
			if !have[int64(first+j)] {
				t.Fatalf("acknowledged point step %d is missing after kill -9 (%d points stored, %d batches acknowledged)", first+j, len(pts), len(ackedSteps))
			}
		}
	}
	lines, _, err := st.Logs(context.Background(), "w", run.ID, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(lines)) < ackedLogSeq {
		t.Errorf("%d log lines stored, %d acknowledged", len(lines), ackedLogSeq)
	}
	for i, l := range lines {
		if l.Seq != int64(i+1) {
			t.Fatalf("log seq %d at index %d: not gap-free", l.Seq, i)
		}
	}
	t.Logf("%d batches acknowledged, %d points stored, %d log lines", len(ackedSteps), len(pts), len(lines))
}
