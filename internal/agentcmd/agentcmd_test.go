package agentcmd

import (
	"context"
	"strings"
	"testing"
)

func TestScoreCommandLineErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"score"}, 2, "no --model given"},
		{"bad model", []string{"score", "--model", "nopath"}, 2, `--model "nopath": want NAME=PATH`},
		{"twice", []string{"score", "--model", "a=x", "--model", "a=y"}, 2, `model "a" given twice`},
		{"unknown flag", []string{"score", "--nope"}, 2, "unknown flag: --nope"},
		{"negative batch", []string{"score", "--model", "a=x", "--max-batch", "-1"}, 2, "--max-batch -1"},
		{"bad log level", []string{"score", "--model", "a=x", "--log-level", "loud"}, 2, `--log-level "loud"`},
		{"missing file", []string{"score", "--model", "a=/nonexistent/m.onnx"}, 1, `model "a"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errw strings.Builder
			code := Main(context.Background(), tc.args, &out, &errw, func(string) string { return "" })
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, errw.String())
			}
			if !strings.Contains(errw.String(), tc.want) {
				t.Errorf("stderr %q, want it to contain %q", errw.String(), tc.want)
			}
		})
	}
}
