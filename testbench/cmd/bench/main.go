package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/atelier-ml/atelier/testbench/agentbench"
	"github.com/atelier-ml/atelier/testbench/fpgabench"
	"github.com/atelier-ml/atelier/testbench/hubbench"
	"github.com/atelier-ml/atelier/testbench/idlebench"
	"github.com/atelier-ml/atelier/testbench/rolloutbench"
	"github.com/atelier-ml/atelier/testbench/scorebench"
	"github.com/atelier-ml/atelier/testbench/telemetrybench"
)

// A benchmark parses its own flags from args and writes its report to w.
type benchmark func(ctx context.Context, args []string, w io.Writer) error

func benchmarks() map[string]benchmark {
	return map[string]benchmark{
		// Each benchmark package adds its line here.
		"agent":     agentbench.Run,
		"fpga":      fpgabench.Run,
		"hub":       hubbench.Run,
		"idle":      idlebench.Run,
		"rollout":   rolloutbench.Run,
		"scoring":   scorebench.Run,
		"telemetry": telemetrybench.Run,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, w io.Writer) error {
	all := benchmarks()
	var names []string
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		return fmt.Errorf("usage: bench NAME [flags], where NAME is one of: %s", strings.Join(names, ", "))
	}
	b, ok := all[args[0]]
	if !ok {
		return fmt.Errorf("unknown benchmark %q: want one of %s", args[0], strings.Join(names, ", "))
	}
	return b(ctx, args[1:], w)
}
