package sample

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Trained names the files one training run wrote.
type Trained struct {
	Model   string // model.onnx: the digits MLP, input "pixels" [N,64], outputs "probabilities" and "label"
	Heldout string // heldout.csv: the held-out rows (see ReadRows)
}

// Train copies the program into dir/src (see CopyProgram) and runs it
// there with `go run .`, writing its outputs to dir/out; args are the
// program's flags (--epochs, --hidden, --seed, ...; none gives its
// defaults). It needs the go command and takes about a second plus the
// build. The program's output is in the error if it fails.
func Train(ctx context.Context, dir string, args ...string) (Trained, error) {
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := CopyProgram(src); err != nil {
		return Trained{}, err
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", ".", "--out", out}, args...)...)
	cmd.Dir = src
	// The copy is its own module: no workspace, no flags of the caller's.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return Trained{}, fmt.Errorf("train the sample model (go run . %s): %w\n%s", strings.Join(args, " "), err, output.Bytes())
	}
	return Trained{Model: filepath.Join(out, "model.onnx"), Heldout: filepath.Join(out, "heldout.csv")}, nil
}
