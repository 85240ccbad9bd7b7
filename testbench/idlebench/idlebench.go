package idlebench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
	"github.com/atelier-ml/atelier/testbench/internal/hubproc"
)

// AimCores is issue 4's aim for the hub's CPU with 1,000 idle agents.
const AimCores = 0.05

// settle is how long Run waits after every agent is online before it
// starts measuring, so the connection burst is not counted as idle.
const settle = 2 * time.Second

// Result is what Run measures.
type Result struct {
	Agents int `json:"agents"`
	// AgentsOnline is how many agents the hub showed online at the end of
	// the measurement.
	AgentsOnline     int     `json:"agents_online"`
	HeartbeatSeconds float64 `json:"heartbeat_seconds"`
	// Seconds is the measured wall time.
	Seconds float64 `json:"seconds"`
	// HubCPUSeconds is the hub process's utime+stime over Seconds.
	HubCPUSeconds float64 `json:"hub_cpu_seconds"`
	// HubCPUCores is HubCPUSeconds / Seconds.
	HubCPUCores float64 `json:"hub_cpu_cores"`
	AimCores    float64 `json:"aim_cores"`
	WithinAim   bool    `json:"within_aim"`
	// HubRSSMiB is the hub's VmRSS at the end of the measurement.
	HubRSSMiB float64 `json:"hub_rss_mib"`
	// BenchCPUCores is the bench process's (the fleet's) CPU over the same
	// interval, for context.
	BenchCPUCores float64 `json:"bench_cpu_cores"`
	// ClkTck is the clock-tick rate used to convert /proc times.
	ClkTck int `json:"clk_tck"`
	// HubPID is the hub process's id; it has exited when Run returns.
	HubPID int `json:"hub_pid"`
}

type options struct {
	json      bool
	agents    int
	seconds   float64
	heartbeat time.Duration
	dir       string
}

// Run parses flags from args, runs the benchmark and writes a table (or,
// with --json, a JSON object) to w. It leaves no process behind.
func Run(ctx context.Context, args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.json, "json", false, "print a JSON object instead of a table")
	fs.IntVar(&o.agents, "agents", 1000, "simulated idle agents")
	fs.Float64Var(&o.seconds, "seconds", 30, "measurement window in seconds")
	fs.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "the agents' heartbeat interval (the real agent's default is 10s)")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.agents < 1 || o.agents > 10_000 {
		return fmt.Errorf("idle bench: --agents %d: want 1-10000", o.agents)
	}
	if !(o.seconds >= 1) || o.seconds > 3600 {
		return fmt.Errorf("idle bench: --seconds %v: want 1-3600", o.seconds)
	}
	if o.heartbeat < time.Second || o.heartbeat > time.Hour {
		return fmt.Errorf("idle bench: --heartbeat %v: want 1s-1h", o.heartbeat)
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "idlebench-*")
		if err != nil {
			return fmt.Errorf("idle bench: %w", err)
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := measure(ctx, o, log)
	if err != nil {
		return fmt.Errorf("idle bench: %w", err)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	verdict := "within the aim"
	if !res.WithinAim {
		verdict = "ABOVE the aim"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "hub (separate process) with %d idle agents, heartbeat %gs, measured over %.1fs\n", res.Agents, res.HeartbeatSeconds, res.Seconds)
	fmt.Fprintf(tw, "hub_cpu_cores\t%.4f\taim < %.2f: %s\n", res.HubCPUCores, res.AimCores, verdict)
	fmt.Fprintf(tw, "hub_rss_mib\t%.1f\tVmRSS at the end\n", res.HubRSSMiB)
	fmt.Fprintf(tw, "agents_online\t%d\tof %d, at the end\n", res.AgentsOnline, res.Agents)
	fmt.Fprintf(tw, "bench_cpu_cores\t%.4f\tthe simulated fleet's process, for context\n", res.BenchCPUCores)
	return tw.Flush()
}

func measure(ctx context.Context, o options, log *slog.Logger) (res Result, err error) {
	res = Result{Agents: o.agents, HeartbeatSeconds: o.heartbeat.Seconds(), AimCores: AimCores, ClkTck: hubproc.ClkTck(ctx)}
	if err := hubproc.RaiseNoFile(); err != nil {
		return res, err
	}
	bin, err := hubproc.Build(ctx, filepath.Join(o.dir, "bin"))
	if err != nil {
		return res, err
	}
	data := filepath.Join(o.dir, "hub")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	h, err := hubproc.Start(ctx, bin, data, server.Addrs{HTTP: "127.0.0.1:0", MQTT: "127.0.0.1:0", NATS: "127.0.0.1:0"})
	if err != nil {
		return res, err
	}
	res.HubPID = h.PID()
	defer func() {
		if serr := h.Stop(30 * time.Second); serr != nil && err == nil {
			err = serr
		}
	}()

	url := "http://" + h.Addrs.HTTP
	c := client.New(url)
	agentsDir := filepath.Join(o.dir, "agents")
	if err := os.MkdirAll(agentsDir, 0o700); err != nil {
		return res, err
	}
	fleet, err := fleetsim.Start(ctx, fleetsim.Config{Hub: url, Agents: o.agents, DataDir: agentsDir,
		Heartbeat: o.heartbeat, Labels: map[string]string{"bench": "idle"}}, log)
	if err != nil {
		return res, err
	}
	// The fleet is closed before the hub is stopped (defers run last in,
	// first out), so agents leave cleanly.
	defer func() {
		if ferr := fleet.Close(); ferr != nil && err == nil {
			err = fmt.Errorf("fleet: %w", ferr)
		}
	}()
	if err := hubproc.Poll(ctx, 2*time.Minute+time.Duration(o.agents)*50*time.Millisecond, func() (bool, error) {
		n, err := online(ctx, c)
		return n == o.agents, err
	}); err != nil {
		return res, fmt.Errorf("waiting for %d agents online: %w", o.agents, err)
	}
	if err := hubproc.Sleep(ctx, settle); err != nil {
		return res, err
	}

	pid := h.PID()
	hub0, err := hubproc.CPUTicks(pid)
	if err != nil {
		return res, err
	}
	self0, err := hubproc.CPUTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := hubproc.Sleep(ctx, time.Duration(o.seconds*float64(time.Second))); err != nil {
		return res, err
	}
	hub1, err := hubproc.CPUTicks(pid)
	if err != nil {
		return res, err
	}
	self1, err := hubproc.CPUTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	wall := time.Since(t0).Seconds()
	rss, err := hubproc.RSSMiB(pid)
	if err != nil {
		return res, err
	}
	if res.AgentsOnline, err = online(ctx, c); err != nil {
		return res, err
	}
	res.Seconds = wall
	res.HubCPUSeconds = float64(hub1-hub0) / float64(res.ClkTck)
	res.HubCPUCores = res.HubCPUSeconds / wall
	res.WithinAim = res.HubCPUCores < AimCores
	res.BenchCPUCores = float64(self1-self0) / float64(res.ClkTck) / wall
	res.HubRSSMiB = rss
	return res, nil
}

// online returns how many agents the hub shows online.
func online(ctx context.Context, c *client.Client) (int, error) {
	as, err := c.ListAgents(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range as {
		if a.State == hub.AgentOnline {
			n++
		}
	}
	return n, nil
}
