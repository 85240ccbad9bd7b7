package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

// TestScoreBinary builds the real binary, serves a model with
// `atelier-agent score`, scores it over HTTP and stops it with SIGTERM.
func TestScoreBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "atelier-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model := filepath.Join(dir, "mlp.onnx")
	if err := os.WriteFile(model, onnxtest.MLP(4, []int{8}, 2, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "score", "--model", "mlp="+model, "--listen", "127.0.0.1:0", "--key", "k1", "--key", "k2")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listen line: %v; stderr:\n%s", err, stderr.String())
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first stdout line %q", line)
	}

	x := []float32{1, -1, 0.5, 2}
	req, _ := http.NewRequest("POST", base+"/score", strings.NewReader(`{"data": [[1, -1, 0.5, 2]]}`))
	req.Header.Set("Authorization", "Bearer k2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("score: %d %s", resp.StatusCode, body)
	}
	var out map[string][][]float32
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	want := onnxtest.MLPOutput(4, []int{8}, 2, 5, x)
	got := out["output"][0]
	for i := range want {
		if d := got[i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("output %v, want %v", got, want)
		}
	}
	resp, err = http.Get(base + "/v2/models/mlp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("metadata without key: %d, want 401", resp.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "scoring endpoint stopped") {
		t.Errorf("no graceful stop in the log:\n%s", stderr.String())
	}
}
