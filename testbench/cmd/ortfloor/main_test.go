package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The process itself is run and measured by testbench/agentbench's test.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--model is required"},
		{[]string{"--model", "m.onnx", "x"}, `unexpected arguments ["x"]`},
		{[]string{"--model", "/nonexistent/m.onnx"}, "/nonexistent/m.onnx"},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
