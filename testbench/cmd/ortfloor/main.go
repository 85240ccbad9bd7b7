package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/atelier-ml/atelier/scoring/ort"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ortfloor:", err)
		os.Exit(1)
	}
}

// run loads the model, runs one inference, writes "ready" to stdout and
// returns when ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ortfloor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "ONNX model to load (required)")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime shared library (default $ATELIER_ORT_LIB, then the setup step's cache)")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (0: as the agent's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *model == "":
		return errors.New("--model is required")
	}
	r, err := ort.Open(*model, ort.Config{LibraryPath: *ortLib, IntraOpThreads: *threads}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := r.Run(ctx, r.Signature().OneInputs())
	if err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	fmt.Fprintf(stdout, "ready: %s loaded, one inference gave %d outputs\n", *model, len(out))
	<-ctx.Done()
	return nil
}
