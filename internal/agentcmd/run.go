package agentcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/agent/edge"
	"github.com/atelier-ml/atelier/internal/ortlib"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// JoinTokenEnv names the environment variable that may hold the join
// token instead of --join-token (keeps it out of the process list).
const JoinTokenEnv = "ATELIER_JOIN_TOKEN"

type runOptions struct {
	hub       string
	joinToken string
	dataDir   string
	name      string
	labels    []string
	advertise string
	scoring   scoreOptions // listen, keys, ORT and batching, as for `score`
	telemetry telemetryOptions
}

// telemetryOptions are the telemetry flags of `run`.
type telemetryOptions struct {
	interval time.Duration
	idle     time.Duration
	spoolMiB int
	spoolAge time.Duration
}

// validate names the first bad telemetry flag.
func (t telemetryOptions) validate() error {
	switch {
	case t.interval < time.Second:
		return fmt.Errorf("%w: --telemetry-interval %v: expected at least 1s", errUsage, t.interval)
	case t.idle != 0 && t.idle < t.interval:
		return fmt.Errorf("%w: --telemetry-idle-interval %v: expected at least --telemetry-interval (%v)", errUsage, t.idle, t.interval)
	case t.spoolMiB < 1:
		return fmt.Errorf("%w: --spool-max-mib %d: expected at least 1", errUsage, t.spoolMiB)
	case t.spoolAge <= 0:
		return fmt.Errorf("%w: --spool-max-age %v: expected a positive duration", errUsage, t.spoolAge)
	}
	return nil
}

func newRunCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --hub URL --data DIR [--join-token TOKEN] [flags]",
		Short: "Run the edge agent: enroll once, then serve the deployments the hub assigns",
		Long: `Run the edge agent until SIGINT or SIGTERM.

The first start enrolls with the hub: --hub URL --join-token TOKEN (or $` + JoinTokenEnv + `)
trades the one-time token for this agent's id and broker credential, written to
DIR/credentials.json (mode 0600). Later starts need only --data DIR (and --hub, which
must then match the enrolled hub); a --join-token given while credentials exist is
ignored with a warning (delete DIR/credentials.json to enroll again).

The agent connects to the hub's MQTT broker, downloads and verifies the models of its
deployments and serves each deployment over HTTP on --listen as the model named after
it: /v2/models/DEPLOYMENT[/versions/V]/infer, POST /score/DEPLOYMENT, /metrics (see
docs/scoring.md). Without the hub it keeps serving its last good deployments from DIR.
The first line on stdout is "listening on http://HOST:PORT".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.joinToken == "" {
				o.joinToken = getenv(JoinTokenEnv)
			}
			if env := getenv(KeysEnv); env != "" {
				for k := range strings.SplitSeq(env, ",") {
					if k = strings.TrimSpace(k); k != "" {
						o.scoring.keys = append(o.scoring.keys, k)
					}
				}
			}
			return runAgent(cmd, o, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.hub, "hub", "", "hub URL, e.g. http://hub.example:8600 (needed to enroll)")
	f.StringVar(&o.joinToken, "join-token", "", "one-time join token for the first start (or $"+JoinTokenEnv+")")
	f.StringVar(&o.dataDir, "data", "", "data directory: credentials, desired state, model cache (required)")
	f.StringVar(&o.name, "name", "", "agent name given at enrollment (default: the host name)")
	f.StringArrayVar(&o.labels, "label", nil, "label K=V given at enrollment (repeatable)")
	f.StringVar(&o.advertise, "advertise", "", "scoring endpoint URL reported to the hub (default http://LISTEN_ADDR)")
	f.DurationVar(&o.telemetry.interval, "telemetry-interval", agent.DefaultTelemetryInterval, "how often a telemetry batch is made (at least 1s)")
	f.DurationVar(&o.telemetry.idle, "telemetry-idle-interval", 0, "while nothing is served, send one batch per this interval instead of one per --telemetry-interval (default 1m, or --telemetry-interval if longer)")
	f.IntVar(&o.telemetry.spoolMiB, "spool-max-mib", 64, "disk the telemetry spool may use while the hub is unreachable; beyond it the oldest batches are dropped and counted")
	f.DurationVar(&o.telemetry.spoolAge, "spool-max-age", 24*time.Hour, "age beyond which unsent telemetry batches are dropped and counted")
	s := &o.scoring
	f.StringVar(&s.listen, "listen", "127.0.0.1:8080", "HOST:PORT of the scoring endpoint (port 0 picks a free port)")
	f.StringArrayVar(&s.keys, "key", nil, "scoring API key (repeatable: primary, secondary)")
	f.StringVar(&s.ortLib, "ort-lib", "", "ONNX Runtime shared library (default $ATELIER_ORT_LIB, then the setup step's cache)")
	f.IntVar(&s.threads, "threads", 0, "ONNX Runtime intra-op threads (0: 1 on machines with <= 2 cores, else ONNX Runtime's default)")
	f.IntVar(&s.maxBatch, "max-batch", 8, "most requests merged into one run (1 disables batching)")
	f.IntVar(&s.queue, "queue", 128, "requests waiting per model before 429")
	addFPGAFlags(f, &s.fpga, true) // --fpga makes this an FPGA agent (fpga.go)
	s.maxBody, s.maxConc, s.timeout = 32<<20, 256, 30*time.Second
	return cmd
}

// parseLabels splits K=V flags, naming the bad one.
func parseLabels(specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: --label %q: want KEY=VALUE", errUsage, s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: --label %q: key %q given twice", errUsage, s, k)
		}
		out[k] = v
	}
	return out, nil
}

func agentVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// credentials returns the stored credentials, or enrolls and stores them.
func credentials(ctx context.Context, o runOptions, caps *agent.EnrollCapabilities, log *slog.Logger) (*agent.Credentials, error) {
	creds, err := agent.LoadCredentials(o.dataDir)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		if o.hub != "" {
			hub, err := agent.ParseHubURL(o.hub)
			if err != nil {
				return nil, fmt.Errorf("%w: --hub: %w", errUsage, err)
			}
			if hub != creds.Hub {
				return nil, fmt.Errorf("%w: --hub %s: %s/%s holds the credentials of agent %q enrolled with hub %s; delete that file to enroll with another hub",
					errUsage, hub, o.dataDir, agent.CredentialsFile, creds.AgentID, creds.Hub)
			}
		}
		if o.joinToken != "" {
			log.Warn("join token ignored: the agent is already enrolled", "agent_id", creds.AgentID,
				"credentials", o.dataDir+"/"+agent.CredentialsFile)
		}
		return creds, nil
	}
	if o.hub == "" || o.joinToken == "" {
		return nil, fmt.Errorf("%w: %s has no %s: the first start needs --hub URL and --join-token TOKEN (or $%s) to enroll",
			errUsage, o.dataDir, agent.CredentialsFile, JoinTokenEnv)
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return nil, err
	}
	name := o.name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("%w: no --name given and the host name is unknown: %w", errUsage, err)
		}
	}
	creds, err = agent.Enroll(ctx, nil, o.hub, agent.EnrollRequest{Token: o.joinToken, Name: name, Labels: labels, Capabilities: *caps}, log)
	if err != nil {
		return nil, err
	}
	if err := agent.SaveCredentials(o.dataDir, creds); err != nil {
		return nil, fmt.Errorf("enrolled as %q but could not keep the credentials (the join token is spent; ask for a new one): %w", creds.AgentID, err)
	}
	return creds, nil
}

func runAgent(cmd *cobra.Command, o runOptions, stdout, stderr io.Writer) error {
	ctx := cmd.Context()
	log, err := newLogger(cmd, stderr)
	if err != nil {
		return err
	}
	if o.dataDir == "" {
		return fmt.Errorf("%w: --data DIR is required", errUsage)
	}
	if err := o.telemetry.validate(); err != nil {
		return err
	}
	s := o.scoring
	if s.threads < 0 || s.maxBatch < 0 || s.queue < 0 {
		return fmt.Errorf("%w: --threads, --max-batch and --queue must be >= 0", errUsage)
	}
	if _, err := parseLabels(o.labels); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// The ONNX Runtime library is only looked for here (a missing one fails
	// now, not at the first deployment); it is loaded with the first model.
	// An idle agent without it is about 14 MiB resident, against 33 for the
	// library and the sample model alone (bench agent), so the capability
	// names the release the agent is built for and checks.
	if _, err := ortlib.Find(s.ortLib); err != nil {
		return err
	}
	caps := agent.DetectCapabilities("edge", ortlib.Version, agentVersion())
	fpgaHost, err := openFPGAAgent(ctx, &o, caps, log) // nil without --fpga
	if err != nil {
		return err
	}
	if fpgaHost != nil {
		defer fpgaHost.Close() // after edge.Run closed the runners
	}
	ec := agent.CapabilitiesJSON(caps)
	creds, err := credentials(ctx, o, &ec, log)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	endpoint := o.advertise
	if endpoint == "" {
		endpoint = "http://" + ln.Addr().String()
		if host, _, _ := net.SplitHostPort(ln.Addr().String()); net.ParseIP(host).IsUnspecified() {
			log.Warn("the endpoint reported to the hub names the wildcard address; give --advertise http://HOST:PORT as clients reach it", "endpoint", endpoint)
		}
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	return edge.Run(ctx, ln, edge.DaemonConfig{
		Agent: agent.Config{
			ID: creds.AgentID, DataDir: o.dataDir, Broker: creds.MQTTURL,
			Username: creds.AgentID, Password: creds.Secret, Endpoint: endpoint, Capabilities: caps,
			TelemetryInterval: o.telemetry.interval, TelemetryIdleInterval: o.telemetry.idle, SpoolMaxBytes: int64(o.telemetry.spoolMiB) << 20, SpoolMaxAge: o.telemetry.spoolAge,
			Devices: fpgaDevices(fpgaHost),
		},
		Registry: scoring.RegistryConfig{Batch: scoring.BatchConfig{MaxBatch: s.maxBatch, QueueSize: s.queue}},
		HTTP: scoring.ServerConfig{
			Keys: s.keys, MaxBodyBytes: s.maxBody, MaxConcurrent: s.maxConc, RequestTimeout: s.timeout, Version: agentVersion(),
		},
		ORT:  ort.Config{LibraryPath: s.ortLib, IntraOpThreads: s.threads},
		Open: fpgaOpen(fpgaHost),
	}, log)
}
