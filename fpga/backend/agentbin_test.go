package backend_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/backend"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
)

// TestAtelierAgentFPGASim builds the real atelier-agent binary, runs
// `atelier-agent fpga sim`, scores through it and stops it with SIGTERM.
func TestAtelierAgentFPGASim(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "atelier-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-race", "-o", bin, "github.com/atelier-ml/atelier/cmd/atelier-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "card.sock")
	cmd := exec.Command(bin, "fpga", "sim", "--socket", sock, "--name", "cli-card", "--rows", "16", "--cols", "16", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "listening on unix:"+sock {
		t.Fatalf("first stdout line %q (%v), want listening on unix:%s", line, err, sock)
	}
	dev, err := fpga.Open(ctx, "unix:"+sock, fpga.Config{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	info, err := dev.Info(ctx)
	if err != nil || info.Name != "cli-card" || info.Rows != 16 || info.Cols != 16 {
		t.Fatalf("info %+v, %v", info, err)
	}
	model := onnxtest.MLP(20, []int{24}, 3, 4)

	// `fpga compile` against the running card reports the partition.
	modelPath, csvPath := filepath.Join(dir, "model.onnx"), filepath.Join(dir, "calib.csv")
	var csv strings.Builder
	for _, s := range split(randRows(52, 8, 20), 20) {
		for i, v := range s {
			if i > 0 {
				csv.WriteByte(',')
			}
			fmt.Fprintf(&csv, "%g", v)
		}
		csv.WriteString(",7\n") // a label column, ignored
	}
	if err := os.WriteFile(modelPath, model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	report, err := exec.CommandContext(ctx, bin, "fpga", "compile", modelPath, "--calibration", csvPath, "--device", "unix:"+sock, "--log-level", "warn").CombinedOutput()
	if err != nil || !strings.Contains(string(report), "array=16x16") || !strings.Contains(string(report), "dense+relu 20→24") {
		t.Fatalf("fpga compile: %v\n%s", err, report)
	}
	r, err := backend.Open(ctx, dev, model, backend.Config{Calibration: split(randRows(50, 16, 20), 20), Compiler: compiler.Options{RequireFull: true}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	x := randRows(51, 3, 20)
	out, err := r.Run(ctx, []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{3, 20}, Data: x}})
	if err != nil {
		t.Fatal(err)
	}
	want := onnxtest.MLPOutput(20, []int{24}, 3, 4, x)
	for i, v := range out[0].Data.([]float32) {
		if d := v - want[i]; d > 0.02 || d < -0.02 {
			t.Fatalf("output %d = %g, want %g", i, v, want[i])
		}
	}
	r.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("atelier-agent fpga sim after SIGTERM: %v, want exit 0", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind after exit: %v", sock, err)
	}
}
