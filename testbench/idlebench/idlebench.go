package idlebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
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
	res = Result{Agents: o.agents, HeartbeatSeconds: o.heartbeat.Seconds(), AimCores: AimCores, ClkTck: clkTck(ctx)}
	if err := raiseNoFile(); err != nil {
		return res, err
	}
	bin, err := buildHub(ctx, filepath.Join(o.dir, "bin"))
	if err != nil {
		return res, err
	}
	data := filepath.Join(o.dir, "hub")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	h, err := startHub(ctx, bin, data)
	if err != nil {
		return res, err
	}
	res.HubPID = h.cmd.Process.Pid
	defer func() {
		if serr := h.stop(30 * time.Second); serr != nil && err == nil {
			err = serr
		}
	}()

	url := "http://" + h.addrs.HTTP
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
	if err := poll(ctx, 2*time.Minute+time.Duration(o.agents)*50*time.Millisecond, func() (bool, error) {
		n, err := online(ctx, c)
		return n == o.agents, err
	}); err != nil {
		return res, fmt.Errorf("waiting for %d agents online: %w", o.agents, err)
	}
	if err := sleep(ctx, settle); err != nil {
		return res, err
	}

	pid := h.cmd.Process.Pid
	hub0, err := cpuTicks(pid)
	if err != nil {
		return res, err
	}
	self0, err := cpuTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := sleep(ctx, time.Duration(o.seconds*float64(time.Second))); err != nil {
		return res, err
	}
	hub1, err := cpuTicks(pid)
	if err != nil {
		return res, err
	}
	self1, err := cpuTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	wall := time.Since(t0).Seconds()
	rss, err := rssMiB(pid)
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

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit: every
// simulated agent holds a connection, and so does the hub for each.
func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("setrlimit NOFILE to %d: %w", l.Max, err)
		}
	}
	return nil
}

// clkTck returns `getconf CLK_TCK`, or 100 (Linux's value) when getconf
// is missing or says something unexpected.
func clkTck(ctx context.Context) int {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n <= 0 {
		return 100
	}
	return n
}

// moduleRoot returns the directory of the go.mod above the working
// directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the bench inside the module")
		}
		dir = parent
	}
}

// buildHub builds ./cmd/atelier into dir and returns the binary's path.
func buildHub(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "atelier")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/atelier")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/atelier in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// hubProc is the hub's process.
type hubProc struct {
	cmd    *exec.Cmd
	addrs  server.Addrs
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done is closed
	stderr *tailBuffer
}

// startHub starts `atelier hub serve` on data with fresh loopback ports
// and waits for its hub.addr. The process is not tied to ctx: stop ends it.
func startHub(ctx context.Context, bin, data string) (*hubProc, error) {
	h := &hubProc{done: make(chan struct{}), stderr: &tailBuffer{max: 16 << 10}}
	h.cmd = exec.Command(bin, "hub", "serve", "--data", data, "--http", "127.0.0.1:0",
		"--mqtt", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn")
	h.cmd.Stdout, h.cmd.Stderr = h.stderr, h.stderr
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hub: %w", err)
	}
	go func() { h.err = h.cmd.Wait(); close(h.done) }()
	err := poll(ctx, 30*time.Second, func() (bool, error) {
		select {
		case <-h.done:
			return false, fmt.Errorf("hub exited before writing %s: %v\n%s", server.AddrFile, h.err, h.stderr)
		default:
		}
		a, err := server.ReadAddrs(data)
		if err != nil {
			return false, nil // not written yet
		}
		h.addrs = a
		return true, nil
	})
	if err != nil {
		_ = h.stop(10 * time.Second)
		return nil, fmt.Errorf("waiting for %s: %w", server.AddrFile, err)
	}
	return h, nil
}

// stop sends SIGTERM and waits up to timeout for the hub to exit, then
// kills it. A non-zero exit after SIGTERM is an error.
func (h *hubProc) stop(timeout time.Duration) error {
	select {
	case <-h.done:
		return nil
	default:
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-h.done
		return nil // it exited meanwhile
	}
	select {
	case <-h.done:
		if h.err != nil {
			return fmt.Errorf("hub exited with %v after SIGTERM\n%s", h.err, h.stderr)
		}
		return nil
	case <-time.After(timeout):
		_ = h.cmd.Process.Kill()
		<-h.done
		return fmt.Errorf("hub did not exit within %v of SIGTERM; killed\n%s", timeout, h.stderr)
	}
}

// cpuTicks returns utime+stime of pid in clock ticks, from /proc/PID/stat.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'. utime and stime are fields 14 and 15, so 11 and
	// 12 after field 3 (the state), which is index 0 here.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return ut + st, nil
}

// rssMiB returns VmRSS of pid in MiB, from /proc/PID/status.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: VmRSS %q, want \"N kB\"", pid, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status VmRSS: %w", pid, err)
		}
		return float64(kb) / 1024, nil
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// poll calls f every 50 ms until it reports done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
