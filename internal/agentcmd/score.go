package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// KeysEnv names the environment variable with API keys (comma-separated),
// an alternative to --key that keeps keys out of the process list.
const KeysEnv = "ATELIER_SCORING_KEYS"

type scoreOptions struct {
	models       []string
	listen       string
	keys         []string
	ortLib       string
	threads      int
	interThreads int
	maxBatch     int
	maxDelay     time.Duration
	queue        int
	workers      int
	maxBody      int64
	maxConc      int
	timeout      time.Duration
	backend      string      // "cpu" or "fpga" (score only)
	fpga         fpgaOptions // with backend fpga, or an FPGA agent
}

func newScoreCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o scoreOptions
	cmd := &cobra.Command{
		Use:   "score --model NAME=PATH [--model NAME=PATH ...] [flags]",
		Short: "Serve ONNX models over HTTP (Open Inference Protocol v2, /score, /metrics)",
		Long: `Serve ONNX models with ONNX Runtime over HTTP until SIGINT or SIGTERM.

Each --model NAME=PATH loads PATH as version 1 of model NAME. Endpoints:
/v2/health/{live,ready}, /v2, /v2/models/NAME[/versions/V][/ready|/infer],
POST /score[/NAME], GET /swagger.json, GET /metrics. See docs/scoring.md.

With --backend fpga the models run on the FPGA card at --fpga unix:PATH
(see docs/fpga.md): each is compiled to int8 with the samples of
--fpga-calibration (NAME=FILE for model NAME, or FILE for all), the part the
card supports runs there and the rest on ONNX Runtime. On a device fault the
card is reset, reprogrammed and the request retried; if it stays down the
request fails with 500, or with --fpga-cpu-fallback runs on the CPU.

With --key (or $` + KeysEnv + `, comma-separated) every endpoint except the
health checks needs "Authorization: Bearer KEY"; give two keys to rotate.
The first line on stdout is "listening on http://HOST:PORT".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if env := getenv(KeysEnv); env != "" {
				for k := range strings.SplitSeq(env, ",") {
					if k = strings.TrimSpace(k); k != "" {
						o.keys = append(o.keys, k)
					}
				}
			}
			return runScore(cmd, o, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.models, "model", nil, "model to serve as NAME=PATH (repeatable)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HOST:PORT to listen on (port 0 picks a free port)")
	f.StringArrayVar(&o.keys, "key", nil, "API key (repeatable: primary, secondary)")
	f.StringVar(&o.ortLib, "ort-lib", "", "ONNX Runtime shared library (default $ATELIER_ORT_LIB, then the setup step's cache)")
	f.IntVar(&o.threads, "threads", 0, "ONNX Runtime intra-op threads (0: 1 on machines with <= 2 cores, else ONNX Runtime's default)")
	f.IntVar(&o.interThreads, "inter-op-threads", 0, "ONNX Runtime inter-op threads (0: as --threads' default)")
	f.IntVar(&o.maxBatch, "max-batch", 8, "most requests merged into one run (1 disables batching)")
	f.DurationVar(&o.maxDelay, "max-delay", 0, "how long a batch waits to fill (0: merge only requests already queued)")
	f.IntVar(&o.queue, "queue", 128, "requests waiting per model before 429")
	f.IntVar(&o.workers, "workers", 0, "concurrent runs per model (0: GOMAXPROCS)")
	f.Int64Var(&o.maxBody, "max-body", 32<<20, "request body limit in bytes (413 above)")
	f.IntVar(&o.maxConc, "max-concurrent", 256, "requests handled at once (503 above)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of one inference, queue included (504 after)")
	f.StringVar(&o.backend, "backend", "cpu", "where models run: cpu (ONNX Runtime) or fpga (the card at --fpga)")
	addFPGAFlags(f, &o.fpga, false)
	return cmd
}

// parseModels splits NAME=PATH flags, naming the bad one.
func parseModels(specs []string) ([][2]string, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no --model given; want --model NAME=PATH", errUsage)
	}
	seen := map[string]bool{}
	var out [][2]string
	for _, s := range specs {
		name, path, ok := strings.Cut(s, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("%w: --model %q: want NAME=PATH", errUsage, s)
		}
		if strings.ContainsAny(name, "/ ") {
			return nil, fmt.Errorf("%w: --model %q: the name may not contain '/' or spaces", errUsage, s)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: --model %q: model %q given twice", errUsage, s, name)
		}
		seen[name] = true
		out = append(out, [2]string{name, path})
	}
	return out, nil
}

func runScore(cmd *cobra.Command, o scoreOptions, stdout, stderr io.Writer) error {
	ctx := cmd.Context()
	log, err := newLogger(cmd, stderr)
	if err != nil {
		return err
	}
	models, err := parseModels(o.models)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    int64
	}{{"--threads", int64(o.threads)}, {"--inter-op-threads", int64(o.interThreads)}, {"--max-batch", int64(o.maxBatch)}, {"--queue", int64(o.queue)}, {"--workers", int64(o.workers)}} {
		if c.v < 0 {
			return fmt.Errorf("%w: %s %d: want >= 0", errUsage, c.name, c.v)
		}
	}
	if o.maxDelay < 0 || o.maxBody <= 0 || o.maxConc <= 0 || o.timeout <= 0 {
		return fmt.Errorf("%w: --max-delay must be >= 0; --max-body, --max-concurrent and --timeout > 0", errUsage)
	}
	oc := ort.Config{LibraryPath: o.ortLib, IntraOpThreads: o.threads, InterOpThreads: o.interThreads}
	open := func(_ context.Context, name, path string) (scoring.Runner, error) { return ort.Open(path, oc, log) }
	switch o.backend {
	case "cpu":
		if o.fpga.target != "" {
			return fmt.Errorf("%w: --fpga %s needs --backend fpga", errUsage, o.fpga.target)
		}
	case "fpga":
		host, err := openFPGAHost(ctx, o.fpga, oc, log)
		if err != nil {
			return err
		}
		defer host.Close() // after reg.Close (deferred below) closed the runners
		open = func(ctx context.Context, name, path string) (scoring.Runner, error) {
			return host.Open(ctx, &agentv1.DeploymentSpec{Name: name, Model: &agentv1.ModelRef{Name: name, Version: 1}}, path)
		}
	default:
		return fmt.Errorf("%w: --backend %q: want cpu or fpga", errUsage, o.backend)
	}
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{Batch: scoring.BatchConfig{
		MaxBatch: o.maxBatch, MaxDelay: o.maxDelay, QueueSize: o.queue, Workers: o.workers,
	}}, log)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Close(cctx); err != nil {
			log.Error("close models", "err", err)
		}
	}()
	for _, m := range models {
		r, err := open(ctx, m[0], m[1])
		if err != nil {
			return fmt.Errorf("model %q: %w", m[0], err)
		}
		if _, err := reg.Load(ctx, m[0], "1", r); err != nil {
			return err
		}
	}
	srv, err := scoring.NewServer(scoring.ServerConfig{
		Keys: o.keys, MaxBodyBytes: o.maxBody, MaxConcurrent: o.maxConc, RequestTimeout: o.timeout,
	}, reg, log)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	log.Info("scoring endpoint up", "addr", ln.Addr().String(), "models", len(models), "auth", len(o.keys) > 0)
	err = srv.Serve(ctx, ln)
	if err == nil || errors.Is(err, context.Canceled) {
		log.Info("scoring endpoint stopped")
		return nil
	}
	return err
}
