package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
	"github.com/atelier-ml/atelier/testbench/sample"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--csv", "x"}, "--url is required"},
		{[]string{"--url", "http://127.0.0.1:1"}, "--csv is required"},
		{[]string{"--url", "u", "--csv", "x", "--batch", "0"}, "--batch 0: want >= 1"},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestAccuracyMatchesTraining trains the sample for one epoch, serves its
// model with the real scoring server and ONNX Runtime, and checks that the
// accuracy scored through the endpoint is the held-out accuracy the
// training program printed (same rows, same model).
func TestAccuracyMatchesTraining(t *testing.T) {
	dir := t.TempDir()
	err := sample.CopyProgram(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", ".", "--epochs", "1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^::metric name=test_accuracy value=(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no test_accuracy in:\n%s", out)
	}
	trained, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.DiscardHandler)
	runner, err := ort.Open(filepath.Join(dir, "outputs", "model.onnx"), ort.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	if _, err := reg.Load(context.Background(), "digits", "1", runner); err != nil {
		t.Fatal(err)
	}
	srv, err := scoring.NewServer(scoring.ServerConfig{}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	var stdout bytes.Buffer
	err = run(context.Background(), []string{"--url", hs.URL, "--csv", filepath.Join(dir, "outputs", "heldout.csv"), "--batch", "50"}, &stdout, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	m = regexp.MustCompile(`scored 360 held-out rows in 8 requests .*accuracy is (\S+) \((\d+) correct\)`).FindSubmatch(stdout.Bytes())
	if m == nil {
		t.Fatalf("unexpected report: %s", stdout.String())
	}
	correct, _ := strconv.Atoi(string(m[2]))
	if want := int(trained*360 + 0.5); correct != want {
		t.Fatalf("endpoint scored %d of 360 correctly, training printed accuracy %v (%d rows)", correct, trained, want)
	}

	err = run(context.Background(), []string{"--url", hs.URL, "--model", "nope", "--csv", filepath.Join(dir, "outputs", "heldout.csv")}, &stdout, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "rows 1-64: POST "+hs.URL+"/v2/models/nope/infer: 404") {
		t.Fatalf("unknown model: error %v", err)
	}
}
