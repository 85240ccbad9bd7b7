package telemetrybench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
	"github.com/atelier-ml/atelier/testbench/internal/hubproc"
)

// Aims from issue 5.
const (
	AimCores        = 0.5     // hub CPU with 1,000 agents reporting every second
	AimDrainSeconds = 60.0    // a 10-minute outage of 1,000 agents drains within a minute
	deployment      = "bench" // the simulated deployment
	settle          = 3 * time.Second
)

// Metric names read from the hub's /metrics.
const (
	metricRequests = "atelier_deployment_requests_total"
	metricBatches  = "atelier_telemetry_batches_ingested_total"
	metricPoints   = "atelier_telemetry_points_received_total"
)

// Result is what Run measures.
type Result struct {
	Agents          int     `json:"agents"`
	IntervalSeconds float64 `json:"interval_seconds"`
	RatePerAgent    float64 `json:"requests_per_second_per_agent"`
	Seconds         float64 `json:"seconds"`
	// Steady state.
	BatchesPerSec float64 `json:"batches_per_sec"`
	PointsPerSec  float64 `json:"points_per_sec"`
	HubCPUCores   float64 `json:"hub_cpu_cores"`
	HubRSSMiB     float64 `json:"hub_rss_mib"`
	BenchCPUCores float64 `json:"bench_cpu_cores"`
	AimCores      float64 `json:"aim_cores"`
	// Outage (when OutageSeconds > 0).
	OutageSeconds    float64 `json:"outage_seconds"`
	DrainSeconds     float64 `json:"drain_seconds"`
	DrainHubCPUCores float64 `json:"drain_hub_cpu_cores"`
	// DrainBenchCPUCores is the simulated fleet's CPU meanwhile: its
	// agents read, fold and upload their spools on this machine's cores.
	DrainBenchCPUCores float64 `json:"drain_bench_cpu_cores"`
	BacklogRequests    int64   `json:"backlog_requests"`
	AimDrainSeconds    float64 `json:"aim_drain_seconds"`
	// The end: every request the fleet scored against what the hub counts.
	Requests   int64 `json:"requests"`
	Counted    int64 `json:"counted"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
}

type options struct {
	json     bool
	agents   int
	seconds  float64
	interval time.Duration
	rate     float64
	outage   time.Duration
	dir      string
	agentDir string
	profile  string
}

// Run parses flags from args, runs the benchmark and writes a table (or,
// with --json, a JSON object) to w. It leaves no process behind.
func Run(ctx context.Context, args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("telemetry", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.json, "json", false, "print a JSON object instead of a table")
	fs.IntVar(&o.agents, "agents", 1000, "simulated agents")
	fs.Float64Var(&o.seconds, "seconds", 30, "steady-state measurement window in seconds")
	fs.DurationVar(&o.interval, "interval", time.Second, "the agents' telemetry interval")
	fs.Float64Var(&o.rate, "rate", 5, "requests per second each agent scores")
	fs.DurationVar(&o.outage, "outage", 0, "after the steady state, kill -9 the hub for this long, restart it and time the drain (0: no outage)")
	fs.StringVar(&o.agentDir, "agents-dir", "", "where the simulated agents keep their data and telemetry spools (default: a temporary directory in /dev/shm if it exists, else DIR/agents; see the package doc)")
	fs.StringVar(&o.profile, "hub-cpuprofile", "", "write a CPU profile of the hub over the steady-state window to this file (the hub runs with --pprof; profiling costs it a little CPU)")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.agents < 1 || o.agents > 10_000:
		return fmt.Errorf("telemetry bench: --agents %d: want 1-10000", o.agents)
	case !(o.seconds >= 1) || o.seconds > 3600:
		return fmt.Errorf("telemetry bench: --seconds %v: want 1-3600", o.seconds)
	case o.interval < time.Second || o.interval > time.Hour:
		return fmt.Errorf("telemetry bench: --interval %v: want 1s-1h", o.interval)
	case !(o.rate > 0) || o.rate > 1000:
		return fmt.Errorf("telemetry bench: --rate %v: want above 0, at most 1000", o.rate)
	case o.outage < 0 || o.outage > 24*time.Hour:
		return fmt.Errorf("telemetry bench: --outage %v: want 0-24h", o.outage)
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "telemetrybench-*")
		if err != nil {
			return fmt.Errorf("telemetry bench: %w", err)
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	if o.agentDir == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			d, err := os.MkdirTemp("/dev/shm", "telemetrybench-agents-*")
			if err != nil {
				return fmt.Errorf("telemetry bench: %w", err)
			}
			defer os.RemoveAll(d)
			o.agentDir = d
		} else {
			o.agentDir = filepath.Join(o.dir, "agents")
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := measure(ctx, o, log)
	if err != nil {
		return fmt.Errorf("telemetry bench: %w", err)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "hub (separate process), %d agents, a batch every %gs, %g requests/s each, steady state over %.1fs\n",
		res.Agents, res.IntervalSeconds, res.RatePerAgent, res.Seconds)
	fmt.Fprintf(tw, "batches_per_sec\t%.0f\tagents / interval = %.0f\n", res.BatchesPerSec, float64(res.Agents)/res.IntervalSeconds)
	fmt.Fprintf(tw, "points_per_sec\t%.0f\tvalues in those batches (counters, buckets, feature statistics, sketch buckets)\n", res.PointsPerSec)
	fmt.Fprintf(tw, "hub_cpu_cores\t%.3f\taim < %.2f: %s\n", res.HubCPUCores, res.AimCores, verdict(res.HubCPUCores < res.AimCores))
	fmt.Fprintf(tw, "hub_rss_mib\t%.1f\t\n", res.HubRSSMiB)
	fmt.Fprintf(tw, "bench_cpu_cores\t%.3f\tthe simulated fleet's process, for context\n", res.BenchCPUCores)
	if res.OutageSeconds > 0 {
		fmt.Fprintf(tw, "drain_seconds\t%.1f\tafter a %.0fs outage (%d requests backlogged); aim < %.0f: %s\n",
			res.DrainSeconds, res.OutageSeconds, res.BacklogRequests, res.AimDrainSeconds, verdict(res.DrainSeconds < res.AimDrainSeconds))
		fmt.Fprintf(tw, "drain_hub_cpu_cores\t%.3f\twhile draining\n", res.DrainHubCPUCores)
		fmt.Fprintf(tw, "drain_bench_cpu_cores\t%.3f\tthe simulated fleet meanwhile (its agents fold and upload their spools on the same %d cores)\n",
			res.DrainBenchCPUCores, runtime.NumCPU())
	}
	fmt.Fprintf(tw, "requests\t%d\tscored by the fleet; the hub counts %d\n", res.Requests, res.Counted)
	fmt.Fprintf(tw, "lost\t%d\tmust be 0\n", res.Lost)
	fmt.Fprintf(tw, "duplicated\t%d\tmust be 0\n", res.Duplicated)
	return tw.Flush()
}

func verdict(ok bool) string {
	if ok {
		return "within the aim"
	}
	return "NOT within the aim"
}

func measure(ctx context.Context, o options, log *slog.Logger) (res Result, err error) {
	res = Result{Agents: o.agents, IntervalSeconds: o.interval.Seconds(), RatePerAgent: o.rate,
		AimCores: AimCores, AimDrainSeconds: AimDrainSeconds}
	if err := hubproc.RaiseNoFile(); err != nil {
		return res, err
	}
	tck := hubproc.ClkTck(ctx)
	bin, err := hubproc.Build(ctx, filepath.Join(o.dir, "bin"))
	if err != nil {
		return res, err
	}
	data := filepath.Join(o.dir, "hub")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	// Fixed ports, so a restarted hub is where the agents expect it.
	addrs := server.Addrs{HTTP: "127.0.0.1:0", NATS: "127.0.0.1:0"}
	if addrs.MQTT, err = freeAddr(); err != nil {
		return res, err
	}
	var extra []string
	if o.profile != "" {
		extra = append(extra, "--pprof")
	}
	h, err := hubproc.Start(ctx, bin, data, addrs, extra...)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := h.Stop(30 * time.Second); serr != nil && err == nil {
			err = serr
		}
	}()
	addrs = h.Addrs // the HTTP port, kept for the restart
	url := "http://" + addrs.HTTP
	c := client.New(url)

	agentsDir := o.agentDir
	if err := os.MkdirAll(agentsDir, 0o700); err != nil {
		return res, err
	}
	fleet, err := fleetsim.Start(ctx, fleetsim.Config{Hub: url, Agents: o.agents, DataDir: agentsDir,
		Labels:  map[string]string{"bench": "telemetry"},
		Traffic: &fleetsim.Traffic{Deployment: deployment, RequestsPerSecond: o.rate, Interval: o.interval}}, log)
	if err != nil {
		return res, err
	}
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

	// Steady state.
	m0, err := scrape(ctx, url)
	if err != nil {
		return res, err
	}
	cpu0, self0, t0, err := ticks(h.PID())
	if err != nil {
		return res, err
	}
	window := time.Duration(o.seconds * float64(time.Second))
	profiled := make(chan error, 1)
	if o.profile != "" {
		go func() { profiled <- hubproc.CPUProfile(ctx, url, window, o.profile) }()
	} else {
		profiled <- nil
	}
	if err := hubproc.Sleep(ctx, window); err != nil {
		return res, err
	}
	cpu1, self1, t1, err := ticks(h.PID())
	if err != nil {
		return res, err
	}
	m1, err := scrape(ctx, url)
	if err != nil {
		return res, err
	}
	wall := t1.Sub(t0).Seconds()
	res.Seconds = wall
	res.HubCPUCores = float64(cpu1-cpu0) / float64(tck) / wall
	res.BenchCPUCores = float64(self1-self0) / float64(tck) / wall
	res.BatchesPerSec = (m1.batches - m0.batches) / wall
	res.PointsPerSec = (m1.points - m0.points) / wall
	if res.HubRSSMiB, err = hubproc.RSSMiB(h.PID()); err != nil {
		return res, err
	}
	if err := <-profiled; err != nil {
		return res, err
	}

	if o.outage > 0 {
		h.Kill()
		if err := hubproc.Sleep(ctx, o.outage); err != nil {
			return res, err
		}
		res.OutageSeconds = o.outage.Seconds()
		if h, err = hubproc.Start(ctx, bin, data, addrs); err != nil {
			return res, fmt.Errorf("restart after the outage: %w", err)
		}
		backlog := fleet.Sent()
		res.BacklogRequests = backlog
		d0, b0, dt0, err := ticks(h.PID())
		if err != nil {
			return res, err
		}
		if err := hubproc.Poll(ctx, 30*time.Minute, func() (bool, error) {
			m, err := scrape(ctx, url)
			if err != nil {
				return false, nil // the hub is still starting
			}
			return int64(m.requests) >= backlog, nil
		}); err != nil {
			return res, fmt.Errorf("waiting for the backlog of %d requests: %w", backlog, err)
		}
		d1, b1, dt1, err := ticks(h.PID())
		if err != nil {
			return res, err
		}
		res.DrainSeconds = dt1.Sub(dt0).Seconds()
		res.DrainHubCPUCores = float64(d1-d0) / float64(tck) / res.DrainSeconds
		res.DrainBenchCPUCores = float64(b1-b0) / float64(tck) / res.DrainSeconds
	}

	// Nothing lost, nothing counted twice.
	res.Requests = fleet.StopTraffic()
	var last float64
	err = hubproc.Poll(ctx, 2*time.Minute, func() (bool, error) {
		m, err := scrape(ctx, url)
		if err != nil {
			return false, err
		}
		last = m.requests
		return int64(last) >= res.Requests, nil
	})
	if err != nil && ctx.Err() != nil {
		return res, err
	}
	// A late duplicate would arrive within an interval or two.
	if err := hubproc.Sleep(ctx, 2*o.interval); err != nil {
		return res, err
	}
	m, err := scrape(ctx, url)
	if err != nil {
		return res, err
	}
	res.Counted = int64(m.requests)
	if d := res.Requests - res.Counted; d > 0 {
		res.Lost = d
	} else {
		res.Duplicated = -d
	}
	return res, nil
}

// ticks reads the hub's and this process's CPU ticks and the time.
func ticks(hubPID int) (hubTicks, selfTicks uint64, at time.Time, err error) {
	if hubTicks, err = hubproc.CPUTicks(hubPID); err != nil {
		return
	}
	if selfTicks, err = hubproc.CPUTicks(os.Getpid()); err != nil {
		return
	}
	return hubTicks, selfTicks, time.Now(), nil
}

// counters are the /metrics values the bench reads.
type counters struct {
	requests, batches, points float64
}

// scrape reads the hub's /metrics: the deployment's requests over every
// outcome, and the telemetry batches and points ingested.
func scrape(ctx context.Context, base string) (counters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return counters{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return counters{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return counters{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (counters, error) {
	var c counters
	var seen [3]bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return c, fmt.Errorf("/metrics: line %q has no value", line)
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return c, fmt.Errorf("/metrics: line %q: %w", line, err)
		}
		switch name {
		case metricRequests:
			if strings.Contains(labels, `deployment="`+deployment+`"`) {
				c.requests += v
				seen[0] = true
			}
		case metricBatches:
			c.batches += v
			seen[1] = true
		case metricPoints:
			c.points += v
			seen[2] = true
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("/metrics: %w", err)
	}
	if !seen[1] || !seen[2] {
		return c, fmt.Errorf("/metrics: no %s or %s series", metricBatches, metricPoints)
	}
	_ = seen[0] // no request counted yet is a valid state
	return c, nil
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

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
