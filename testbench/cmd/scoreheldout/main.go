package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/atelier-ml/atelier/testbench/sample"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "scoreheldout:", err)
		os.Exit(1)
	}
}

// result is what one scoring pass found.
type result struct {
	Rows, Correct, Requests int
	Elapsed                 time.Duration
}

func (r result) accuracy() float64 {
	if r.Rows == 0 {
		return 0
	}
	return float64(r.Correct) / float64(r.Rows)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scoreheldout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "base URL of the scoring endpoint, e.g. http://127.0.0.1:8080 (required)")
	model := fs.String("model", "digits", "model (deployment) name to score with")
	csvPath := fs.String("csv", "", "held-out rows: 64 pixels and a label per line (required)")
	batch := fs.Int("batch", 64, "rows per infer request")
	key := fs.String("key", "", "API key sent as Authorization: Bearer KEY")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *url == "":
		return errors.New("--url is required")
	case *csvPath == "":
		return errors.New("--csv is required")
	case *batch < 1:
		return fmt.Errorf("--batch %d: want >= 1", *batch)
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	pixels, labels, err := sample.ReadRows(f, *csvPath)
	if err != nil {
		return err
	}
	s := &sample.Scorer{URL: strings.TrimRight(*url, "/") + "/v2/models/" + *model + "/infer", Key: *key,
		HTTP: &http.Client{Timeout: 30 * time.Second}}
	res, err := scoreAll(ctx, s, pixels, labels, *batch)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scored %d held-out rows in %d requests in %s: the endpoint's accuracy is %.4f (%d correct)\n",
		res.Rows, res.Requests, res.Elapsed.Round(time.Millisecond), res.accuracy(), res.Correct)
	return nil
}

// scoreAll scores the rows batch by batch through s.
func scoreAll(ctx context.Context, s *sample.Scorer, pixels []float32, labels []int64, batch int) (result, error) {
	var res result
	start := time.Now()
	for lo := 0; lo < len(labels); lo += batch {
		hi := min(lo+batch, len(labels))
		got, err := s.Infer(ctx, pixels[64*lo:64*hi])
		if err != nil {
			return res, fmt.Errorf("rows %d-%d: %w", lo+1, hi, err)
		}
		if len(got) != hi-lo {
			return res, fmt.Errorf("rows %d-%d: %d labels in the answer, want %d", lo+1, hi, len(got), hi-lo)
		}
		for i, l := range got {
			if l == labels[lo+i] {
				res.Correct++
			}
		}
		res.Rows += hi - lo
		res.Requests++
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
