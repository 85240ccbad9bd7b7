package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(1)
	}
}

// EnvPrefix is prepended to a parameter's upper-case name (dashes become
// underscores) to get the environment variable that sets its default.
const EnvPrefix = "ATELIER_PARAM_"

// config is the parsed command line.
type config struct {
	Params
	data, out string
}

// envName returns the environment variable for a flag: "batch-size" →
// ATELIER_PARAM_BATCH_SIZE.
func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags reads the flags; each hyperparameter's default comes from its
// environment variable when set.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{Params: Params{LR: 0.05, Momentum: 0.9, Epochs: 30, Hidden: 32, BatchSize: 32, Seed: 1}, data: "data/digits.csv.gz", out: "outputs"}
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var envErr error
	float := func(p *float64, name, usage string) {
		if v := getenv(envName(name)); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: not a number", envName(name), v)
			}
			*p = f
		}
		fs.Float64Var(p, name, *p, usage+" (env "+envName(name)+")")
	}
	integer := func(p *int, name, usage string) {
		if v := getenv(envName(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: not an integer", envName(name), v)
			}
			*p = n
		}
		fs.IntVar(p, name, *p, usage+" (env "+envName(name)+")")
	}
	float(&c.LR, "lr", "learning rate")
	float(&c.Momentum, "momentum", "SGD momentum in [0, 1)")
	integer(&c.Epochs, "epochs", "passes over the training rows")
	integer(&c.Hidden, "hidden", "hidden units")
	integer(&c.BatchSize, "batch-size", "minibatch size")
	seed := int(c.Seed)
	integer(&seed, "seed", "random seed for initialization and shuffling")
	fs.StringVar(&c.data, "data", c.data, "gzip CSV data file")
	fs.StringVar(&c.out, "out", c.out, "output directory for model.onnx, heldout.csv and baseline.csv")
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Seed = int64(seed)
	switch {
	case !(c.LR > 0) || c.LR > 10:
		return c, fmt.Errorf("--lr %v: want 0 < lr <= 10", c.LR)
	case !(c.Momentum >= 0 && c.Momentum < 1):
		return c, fmt.Errorf("--momentum %v: want 0 <= momentum < 1", c.Momentum)
	case c.Epochs < 1 || c.Epochs > 10000:
		return c, fmt.Errorf("--epochs %d: want 1–10000", c.Epochs)
	case c.Hidden < 1 || c.Hidden > 4096:
		return c, fmt.Errorf("--hidden %d: want 1–4096", c.Hidden)
	case c.BatchSize < 1:
		return c, fmt.Errorf("--batch-size %d: want >= 1", c.BatchSize)
	}
	return c, nil
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func run(args []string, stdout io.Writer, getenv func(string) string) error {
	c, err := parseFlags(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	for _, p := range []struct{ name, value string }{
		{"lr", num(c.LR)},
		{"momentum", num(c.Momentum)},
		{"epochs", strconv.Itoa(c.Epochs)},
		{"hidden", strconv.Itoa(c.Hidden)},
		{"batch_size", strconv.Itoa(c.BatchSize)},
		{"seed", strconv.FormatInt(c.Seed, 10)},
	} {
		fmt.Fprintf(stdout, "::param name=%s value=%s\n", p.name, p.value)
	}
	all, err := LoadDigits(c.data)
	if err != nil {
		return err
	}
	train, heldout := Split(all)
	fmt.Fprintf(stdout, "loaded %d rows from %s: %d for training, %d held out (row index %% 5 == 0)\n", len(all), c.data, len(train), len(heldout))

	start := time.Now()
	m := Train(train, heldout, c.Params, func(s EpochStats) {
		fmt.Fprintf(stdout, "::metric name=loss value=%s step=%d\n", num(s.Loss), s.Epoch)
		fmt.Fprintf(stdout, "::metric name=train_accuracy value=%s step=%d\n", num(s.TrainAcc), s.Epoch)
		fmt.Fprintf(stdout, "::metric name=accuracy value=%s step=%d\n", num(s.HeldoutAcc), s.Epoch)
		fmt.Fprintf(stdout, "epoch %3d/%d  loss %.4f  train accuracy %.4f  held-out accuracy %.4f\n",
			s.Epoch, c.Epochs, s.Loss, s.TrainAcc, s.HeldoutAcc)
	})
	elapsed := time.Since(start)
	w := m.Export()
	acc := w.Accuracy(heldout)
	fmt.Fprintf(stdout, "::metric name=test_accuracy value=%s\n", num(acc))

	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	modelPath := filepath.Join(c.out, "model.onnx")
	if err := os.WriteFile(modelPath, EncodeONNX(w), 0o644); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	heldoutPath := filepath.Join(c.out, "heldout.csv")
	f, err := os.Create(heldoutPath)
	if err != nil {
		return fmt.Errorf("write held-out rows: %w", err)
	}
	if err := WriteCSV(f, heldout); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", heldoutPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", heldoutPath, err)
	}
	baselinePath := filepath.Join(c.out, BaselineFile)
	if err := writeFile(baselinePath, func(w io.Writer) error { return WriteBaselineCSV(w, train) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained in %.2fs; held-out accuracy %.4f; wrote %s, %s and %s (training inputs, the drift baseline)\n",
		elapsed.Seconds(), acc, modelPath, heldoutPath, baselinePath)
	return nil
}

// writeFile creates path and fills it with fill.
func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
