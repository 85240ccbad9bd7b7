package agentbench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/testbench/internal/hubproc"
	"github.com/atelier-ml/atelier/testbench/sample"
)

// AimIdleMiB is issue 4's aim for the agent's resident memory while idle.
const AimIdleMiB = 20

// reference is what the aim is compared to in the report.
const reference = "Greengrass 96, KubeEdge edgecore ~70"

// ortLibrary is the file name part that marks ONNX Runtime in /proc/PID/maps.
const ortLibrary = "libonnxruntime"

// The workspace, model and deployment the bench creates on its own hub.
const (
	workspace  = "bench"
	deployment = "digits"
)

// Result is what Run measures. Memory is in MiB (1024 kB of
// /proc/PID/status); "rss" is VmRSS, "peak" VmHWM, "anon" RssAnon (heap,
// stacks) and "file" RssFile (the binary and shared libraries, shareable).
type Result struct {
	Requests    int `json:"requests"`
	Concurrency int `json:"concurrency"`
	// Correct is how many answers named the held-out row's label: the
	// real model answered.
	Correct       int     `json:"correct"`
	ModelBytes    int64   `json:"model_bytes"`
	SettleSeconds float64 `json:"settle_seconds"`

	// The agent enrolled and connected, no deployment.
	AgentIdleRSSMiB  float64 `json:"agent_idle_rss_mib"`
	AgentIdlePeakMiB float64 `json:"agent_idle_peak_mib"`
	AgentIdleAnonMiB float64 `json:"agent_idle_anon_mib"`
	AgentIdleFileMiB float64 `json:"agent_idle_file_mib"`
	// ORTMappedIdle says whether libonnxruntime was mapped while idle.
	ORTMappedIdle bool `json:"ort_mapped_idle"`

	// AgentLoadedRSSMiB is the agent serving the model before any request.
	AgentLoadedRSSMiB float64 `json:"agent_loaded_rss_mib"`
	// The agent serving the model, after Requests requests.
	AgentServingRSSMiB  float64 `json:"agent_serving_rss_mib"`
	AgentServingAnonMiB float64 `json:"agent_serving_anon_mib"`
	AgentServingFileMiB float64 `json:"agent_serving_file_mib"`
	// AgentPeakRSSMiB is VmHWM at the end: the most the agent ever held.
	AgentPeakRSSMiB  float64 `json:"agent_peak_rss_mib"`
	ORTMappedServing bool    `json:"ort_mapped_serving"`

	// The floor: a process holding only ONNX Runtime and the same model
	// after one inference (testbench/cmd/ortfloor).
	ORTFloorRSSMiB  float64 `json:"ort_floor_rss_mib"`
	ORTFloorPeakMiB float64 `json:"ort_floor_peak_mib"`
	ORTFloorAnonMiB float64 `json:"ort_floor_anon_mib"`
	ORTFloorFileMiB float64 `json:"ort_floor_file_mib"`

	// AgentServingOverheadMiB is AgentServingRSSMiB - ORTFloorRSSMiB: what
	// the agent holds beyond the model in ONNX Runtime.
	AgentServingOverheadMiB float64 `json:"agent_serving_overhead_mib"`
	AimIdleMiB              float64 `json:"aim_idle_mib"`
	// WithinAim is AgentIdleRSSMiB < AimIdleMiB.
	WithinAim bool `json:"within_aim"`

	// The processes' ids; all have exited when Run returns.
	HubPID   int `json:"hub_pid"`
	AgentPID int `json:"agent_pid"`
	FloorPID int `json:"floor_pid"`
}

type options struct {
	json        bool
	requests    int
	concurrency int
	settle      time.Duration
	dir         string
}

// Run parses flags from args, runs the benchmark and writes a table (or,
// with --json, a JSON object) to w. It leaves no process behind.
func Run(ctx context.Context, args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.json, "json", false, "print a JSON object instead of a table")
	fs.IntVar(&o.requests, "requests", 1000, "infer requests of one held-out row each, sent to the agent before the serving measurement")
	fs.IntVar(&o.concurrency, "concurrency", 4, "requests in flight at once")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "wait before each measurement (the agent online, the requests done, the floor ready)")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent bench: unexpected arguments %q", fs.Args())
	}
	if o.requests < 1 || o.requests > 1_000_000 {
		return fmt.Errorf("agent bench: --requests %d: want 1-1000000", o.requests)
	}
	if o.concurrency < 1 || o.concurrency > 256 {
		return fmt.Errorf("agent bench: --concurrency %d: want 1-256", o.concurrency)
	}
	if o.settle < 0 || o.settle > 10*time.Minute {
		return fmt.Errorf("agent bench: --settle %v: want 0-10m", o.settle)
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "agentbench-*")
		if err != nil {
			return fmt.Errorf("agent bench: %w", err)
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	res, err := measure(ctx, o)
	if err != nil {
		return fmt.Errorf("agent bench: %w", err)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return table(w, res)
}

// table writes res as a table: name, value, what it is.
func table(w io.Writer, res Result) error {
	verdict := "within the aim"
	if !res.WithinAim {
		verdict = "ABOVE the aim"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "atelier-agent (separate process) on a loopback hub; the digits sample model (%d bytes); %d requests at concurrency %d; settle %gs\n",
		res.ModelBytes, res.Requests, res.Concurrency, res.SettleSeconds)
	fmt.Fprintf(tw, "agent_idle_rss_mib\t%.1f\tenrolled, connected, no deployment (anon %.1f, file %.1f); aim < %g (%s): %s\n",
		res.AgentIdleRSSMiB, res.AgentIdleAnonMiB, res.AgentIdleFileMiB, res.AimIdleMiB, reference, verdict)
	fmt.Fprintf(tw, "agent_loaded_rss_mib\t%.1f\tthe model deployed and loaded, before any request\n", res.AgentLoadedRSSMiB)
	fmt.Fprintf(tw, "agent_serving_rss_mib\t%.1f\tserving, after the requests (anon %.1f, file %.1f); %d of %d answers correct\n",
		res.AgentServingRSSMiB, res.AgentServingAnonMiB, res.AgentServingFileMiB, res.Correct, res.Requests)
	fmt.Fprintf(tw, "agent_peak_rss_mib\t%.1f\tVmHWM: the most the agent held (idle peak %.1f)\n", res.AgentPeakRSSMiB, res.AgentIdlePeakMiB)
	fmt.Fprintf(tw, "ort_floor_rss_mib\t%.1f\tONNX Runtime + the same model + one inference, nothing else (anon %.1f, file %.1f)\n",
		res.ORTFloorRSSMiB, res.ORTFloorAnonMiB, res.ORTFloorFileMiB)
	fmt.Fprintf(tw, "agent_serving_overhead_mib\t%.1f\tserving - floor: the agent's own share while serving\n", res.AgentServingOverheadMiB)
	fmt.Fprintf(tw, "ort_mapped_idle\t%v\t%s in /proc/PID/maps while idle (serving: %v)\n", res.ORTMappedIdle, ortLibrary, res.ORTMappedServing)
	return tw.Flush()
}

func measure(ctx context.Context, o options) (res Result, err error) {
	res = Result{Requests: o.requests, Concurrency: o.concurrency, SettleSeconds: o.settle.Seconds(), AimIdleMiB: AimIdleMiB}
	bins, err := hubproc.BuildPackages(ctx, filepath.Join(o.dir, "bin"), "./cmd/atelier", "./cmd/atelier-agent", "./testbench/cmd/ortfloor")
	if err != nil {
		return res, err
	}
	atelierBin, agentBin, floorBin := bins[0], bins[1], bins[2]
	model, err := sample.Train(ctx, filepath.Join(o.dir, "sample"))
	if err != nil {
		return res, err
	}
	f, err := os.Open(model.Heldout)
	if err != nil {
		return res, err
	}
	pixels, labels, err := sample.ReadRows(f, model.Heldout)
	f.Close()
	if err != nil {
		return res, err
	}

	data := filepath.Join(o.dir, "hub")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	h, err := hubproc.Start(ctx, atelierBin, data, server.Addrs{HTTP: "127.0.0.1:0", MQTT: "127.0.0.1:0", NATS: "127.0.0.1:0"})
	if err != nil {
		return res, err
	}
	res.HubPID = h.PID()
	defer stop(h, &err)
	url := "http://" + h.Addrs.HTTP
	c := client.New(url)
	if res.ModelBytes, err = register(ctx, c, model.Model); err != nil {
		return res, err
	}
	tok, err := c.CreateJoinToken(ctx, nil, "")
	if err != nil {
		return res, err
	}

	a, err := hubproc.Exec("agent", agentBin, "run", "--hub", url, "--join-token", tok.Token,
		"--data", filepath.Join(o.dir, "agent"), "--listen", "127.0.0.1:0", "--name", "agentbench", "--log-level", "warn")
	if err != nil {
		return res, err
	}
	res.AgentPID = a.PID()
	defer stop(a, &err) // before the hub's: the agent leaves while its hub is up
	am, err := measureAgent(ctx, c, a, o, pixels, labels, &res.Correct)
	if err != nil {
		return res, err
	}
	floor, err := measureFloor(ctx, floorBin, model.Model, o.settle, &res.FloorPID)
	if err != nil {
		return res, err
	}
	idle, serving := am.idle, am.serving
	res.AgentIdleRSSMiB, res.AgentIdlePeakMiB, res.AgentIdleAnonMiB, res.AgentIdleFileMiB = idle.RSS, idle.HWM, idle.Anon, idle.File
	res.AgentLoadedRSSMiB = am.loaded.RSS
	res.AgentServingRSSMiB, res.AgentPeakRSSMiB, res.AgentServingAnonMiB, res.AgentServingFileMiB = serving.RSS, serving.HWM, serving.Anon, serving.File
	res.ORTFloorRSSMiB, res.ORTFloorPeakMiB, res.ORTFloorAnonMiB, res.ORTFloorFileMiB = floor.RSS, floor.HWM, floor.Anon, floor.File
	res.ORTMappedIdle, res.ORTMappedServing = idle.ort, serving.ort
	res.AgentServingOverheadMiB = res.AgentServingRSSMiB - res.ORTFloorRSSMiB
	res.WithinAim = res.AgentIdleRSSMiB < AimIdleMiB
	return res, nil
}

// agentMem is the agent's memory at each step of the bench.
type agentMem struct{ idle, loaded, serving mem }

// measureAgent waits until the agent p is online, measures it idle,
// deploys the model to it, measures it loaded, scores o.requests held-out
// rows (counting the right answers in *correct) and measures it serving.
func measureAgent(ctx context.Context, c *client.Client, p *hubproc.Proc, o options, pixels []float32, labels []int64, correct *int) (m agentMem, err error) {
	agent, err := waitOnline(ctx, c, p)
	if err != nil {
		return m, err
	}
	if m.idle, err = settled(ctx, p.PID(), o.settle); err != nil {
		return m, err
	}
	if _, err := c.CreateDeployment(ctx, workspace, hub.DeploymentCreate{Name: deployment, Model: deployment + ":1", Agents: []string{agent.ID}}); err != nil {
		return m, err
	}
	if err := waitServing(ctx, c, p, agent.ID); err != nil {
		return m, err
	}
	if m.loaded, err = settled(ctx, p.PID(), o.settle); err != nil {
		return m, err
	}
	s := &sample.Scorer{URL: agent.Endpoint + "/v2/models/" + deployment + "/infer", HTTP: &http.Client{Timeout: 30 * time.Second}}
	if *correct, err = score(ctx, s, pixels, labels, o.requests, o.concurrency); err != nil {
		return m, err
	}
	m.serving, err = settled(ctx, p.PID(), o.settle)
	return m, err
}

// mem is a process's memory and whether it maps ONNX Runtime.
type mem struct {
	hubproc.Mem
	ort bool
}

// settled waits settle, then reads pid's memory and maps.
func settled(ctx context.Context, pid int, settle time.Duration) (mem, error) {
	if err := hubproc.Sleep(ctx, settle); err != nil {
		return mem{}, err
	}
	m, err := hubproc.Memory(pid)
	if err != nil {
		return mem{}, err
	}
	ort, err := hubproc.Mapped(pid, ortLibrary)
	return mem{m, ort}, err
}

// stop stops p with SIGTERM; its error becomes *err if there is none yet.
func stop(p *hubproc.Proc, err *error) {
	if serr := p.Stop(30 * time.Second); serr != nil && *err == nil {
		*err = serr
	}
}

// register creates the workspace and registers the model file as
// deployment:1; it returns the file's size.
func register(ctx context.Context, c *client.Client, path string) (int64, error) {
	if _, err := c.CreateWorkspace(ctx, workspace, "agent bench"); err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := c.RegisterModel(ctx, workspace, deployment, f, fi.Size(), client.RegisterOptions{}); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// await polls f until it reports done, failing at once if p (named name)
// exits meanwhile; what names the wait in errors.
func await(ctx context.Context, p *hubproc.Proc, name, what string, timeout time.Duration, f func() (bool, error)) error {
	err := hubproc.Poll(ctx, timeout, func() (bool, error) {
		if done, werr := p.Exited(); done {
			return false, fmt.Errorf("%s exited (%v):\n%s", name, werr, p.Output())
		}
		return f()
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// waitOnline waits until the hub shows the one agent online with its
// scoring endpoint, and returns it.
func waitOnline(ctx context.Context, c *client.Client, p *hubproc.Proc) (agent hub.Agent, err error) {
	err = await(ctx, p, "agent", "the agent online", time.Minute, func() (bool, error) {
		as, err := c.ListAgents(ctx)
		if err != nil {
			return false, err
		}
		if len(as) == 1 && as[0].State == hub.AgentOnline && as[0].Endpoint != "" {
			agent = as[0]
			return true, nil
		}
		return false, nil
	})
	return agent, err
}

// waitServing waits until the hub shows the deployment serving on the
// agent; a failed target is an error.
func waitServing(ctx context.Context, c *client.Client, p *hubproc.Proc, id string) error {
	return await(ctx, p, "agent", "the deployment to serve", 2*time.Minute, func() (bool, error) {
		d, err := c.GetDeployment(ctx, workspace, deployment)
		if err != nil {
			return false, err
		}
		for _, t := range d.Targets {
			if t.Agent != id {
				continue
			}
			switch t.State {
			case "serving":
				return t.ModelVersion == 1, nil
			case "failed", "rolled_back":
				return false, fmt.Errorf("target %s: %s: %s", id, t.State, t.Error)
			}
		}
		return false, nil
	})
}

// score sends n requests of one held-out row each (cycling through the
// rows), concurrency at a time, and returns how many answers were right.
// Any failed request is an error.
func score(ctx context.Context, s *sample.Scorer, pixels []float32, labels []int64, n, concurrency int) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, correct atomic.Int64
		wg            sync.WaitGroup
		mu            sync.Mutex
		errs          []error
	)
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				row := i % len(labels)
				got, err := s.Infer(ctx, pixels[64*row:64*row+64])
				if err == nil && len(got) != 1 {
					err = fmt.Errorf("%d labels for one row", len(got))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("request %d: %w", i+1, err))
					mu.Unlock()
					cancel()
					return
				}
				if got[0] == labels[row] {
					correct.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errs[0]
	}
	return int(correct.Load()), nil
}

// measureFloor runs ortfloor on the model, waits until it is ready and
// settled, reads its memory and stops it. *pid is set once it started.
func measureFloor(ctx context.Context, bin, model string, settle time.Duration, pid *int) (m mem, err error) {
	p, err := hubproc.Exec("ortfloor", bin, "--model", model)
	if err != nil {
		return m, err
	}
	*pid = p.PID()
	defer stop(p, &err)
	if err := await(ctx, p, "ortfloor", "ortfloor ready", time.Minute, func() (bool, error) {
		return strings.Contains(p.Output(), "ready"), nil
	}); err != nil {
		return m, err
	}
	return settled(ctx, p.PID(), settle)
}
