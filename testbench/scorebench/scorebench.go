package scorebench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// Result holds the figures of one model. Latencies are in microseconds.
type Result struct {
	Params          int     `json:"params"`
	RawORTP50us     float64 `json:"raw_ort_p50_us"`
	RawORTRPS       float64 `json:"raw_ort_rps"`
	HTTPC1P50us     float64 `json:"http_c1_p50_us"`
	HTTPC1P99us     float64 `json:"http_c1_p99_us"`
	HTTPC1RPS       float64 `json:"http_c1_rps"`
	HTTPC8P50us     float64 `json:"http_c8_p50_us"`
	HTTPC8RPS       float64 `json:"http_c8_rps"`
	HTTPOverheadP50 float64 `json:"http_overhead_p50_us"`
	C8MeanBatch     float64 `json:"http_c8_mean_batch"`
	// HTTPLiveP50us is the p50 of GET /v2/health/live on the same
	// connection: the floor of net/http and loopback, without scoring.
	HTTPLiveP50us float64 `json:"http_live_p50_us"`
}

type modelSpec struct {
	name        string
	in, out     int
	hidden      []int
	description string
}

var models = []modelSpec{
	{name: "tiny", in: 16, hidden: []int{16}, out: 4, description: "MLP 16-16-4"},
	{name: "large", in: 256, hidden: []int{4096, 4096}, out: 16, description: "MLP 256-4096-4096-16"},
}

func (m modelSpec) params() int {
	n, prev := 0, m.in
	for _, h := range append(slices.Clone(m.hidden), m.out) {
		n += prev*h + h
		prev = h
	}
	return n
}

// Run parses args (--json, --duration, --cpuprofile, --models) and writes
// the report to w.
func Run(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("scoring", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print a JSON object instead of a table")
	dur := fs.Duration("duration", 2*time.Second, "duration of each measurement")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the HTTP measurements to this file")
	only := fs.String("models", "tiny,large", "comma-separated models to measure: tiny, large")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("scoring bench: %w", err)
	}
	if *dur <= 0 {
		return fmt.Errorf("scoring bench: --duration %s: want > 0", *dur)
	}
	dir, err := os.MkdirTemp("", "scorebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	results := map[string]*Result{}
	var order []string
	for _, m := range models {
		if !slices.Contains(strings.Split(*only, ","), m.name) {
			continue
		}
		r, err := measure(ctx, dir, m, *dur)
		if err != nil {
			return fmt.Errorf("scoring bench %s: %w", m.name, err)
		}
		results[m.name] = r
		order = append(order, m.name)
	}
	if *asJSON {
		out := map[string]any{}
		for k, v := range results {
			out[k] = v
		}
		if t := results["tiny"]; t != nil {
			out["raw_ort_p50_us"], out["raw_ort_rps"] = t.RawORTP50us, t.RawORTRPS
			out["http_c1_p50_us"], out["http_c1_p99_us"] = t.HTTPC1P50us, t.HTTPC1P99us
			out["http_c8_rps"] = t.HTTPC8RPS
			out["http_overhead_p50_us"] = t.HTTPOverheadP50
			out["http_live_p50_us"] = t.HTTPLiveP50us
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(w, "%-6s %9s %10s %10s %10s %10s %10s %10s %10s %10s %8s %8s\n", "model", "params", "raw p50µs", "raw rps", "c1 p50µs", "c1 p99µs", "c1 rps", "c8 p50µs", "c8 rps", "overhead", "batch", "live p50")
	for _, name := range order {
		r := results[name]
		fmt.Fprintf(w, "%-6s %9d %10.1f %10.0f %10.1f %10.1f %10.0f %10.1f %10.0f %10.1f %8.2f %8.1f\n", name, r.Params, r.RawORTP50us, r.RawORTRPS, r.HTTPC1P50us, r.HTTPC1P99us, r.HTTPC1RPS, r.HTTPC8P50us, r.HTTPC8RPS, r.HTTPOverheadP50, r.C8MeanBatch, r.HTTPLiveP50us)
	}
	if t := results["tiny"]; t != nil {
		fmt.Fprintf(w, "aim: tiny HTTP overhead p50 %.1f µs <= 60 µs: %v\n", t.HTTPOverheadP50, t.HTTPOverheadP50 <= 60)
	}
	if l := results["large"]; l != nil {
		fmt.Fprintf(w, "aim: large 8-client rps %.0f >= raw sequential rps %.0f: %v\n", l.HTTPC8RPS, l.RawORTRPS, l.HTTPC8RPS >= l.RawORTRPS)
	}
	return nil
}

func measure(ctx context.Context, dir string, m modelSpec, dur time.Duration) (*Result, error) {
	log := slog.New(slog.DiscardHandler)
	path := filepath.Join(dir, m.name+".onnx")
	if err := os.WriteFile(path, onnxtest.MLP(m.in, m.hidden, m.out, 1), 0o644); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, m.in)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	res := &Result{Params: m.params()}

	// Raw ONNX Runtime: sequential Run calls on one session.
	raw, err := ort.Open(path, ort.Config{}, log)
	if err != nil {
		return nil, err
	}
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, int64(m.in)}, Data: x}}
	lat, n, el, err := loop(ctx, dur, 1, func() error { _, err := raw.Run(ctx, in); return err })
	raw.Close()
	if err != nil {
		return nil, err
	}
	res.RawORTP50us, res.RawORTRPS = pct(lat, 50), float64(n)/el.Seconds()

	// The HTTP endpoint on loopback.
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, log)
	if err != nil {
		return nil, err
	}
	defer reg.Close(context.Background())
	r, err := ort.Open(path, ort.Config{}, log)
	if err != nil {
		return nil, err
	}
	if _, err := reg.Load(ctx, "m", "1", r); err != nil {
		return nil, err
	}
	srv, err := scoring.NewServer(scoring.ServerConfig{}, reg, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-done }()
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "input", "datatype": "FP32", "shape": []int{1, m.in}, "data": x}}})
	url := "http://" + ln.Addr().String() + "/v2/models/m/infer"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	post := func() error {
		resp, err := client.Post(url, "application/json", strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	if _, _, _, err := loop(ctx, dur/4, 1, post); err != nil { // warm connections and code paths
		return nil, err
	}
	live := func() error {
		resp, err := client.Get("http://" + ln.Addr().String() + "/v2/health/live")
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	lat, _, _, err = loop(ctx, dur/2, 1, live)
	if err != nil {
		return nil, err
	}
	res.HTTPLiveP50us = pct(lat, 50)
	lat, n, el, err = loop(ctx, dur, 1, post)
	if err != nil {
		return nil, err
	}
	res.HTTPC1P50us, res.HTTPC1P99us, res.HTTPC1RPS = pct(lat, 50), pct(lat, 99), float64(n)/el.Seconds()
	lat, n, el, err = loop(ctx, dur, 8, post)
	if err != nil {
		return nil, err
	}
	res.HTTPC8P50us, res.HTTPC8RPS = pct(lat, 50), float64(n)/el.Seconds()
	if res.C8MeanBatch, err = meanBatch(client, "http://"+ln.Addr().String()+"/metrics"); err != nil {
		return nil, err
	}
	res.HTTPOverheadP50 = res.HTTPC1P50us - res.RawORTP50us
	return res, nil
}

// meanBatch reads the mean batch size since load from /metrics.
func meanBatch(c *http.Client, url string) (float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum, count float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `atelier_scoring_batch_size_sum{model="m",version="1"} `); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, `atelier_scoring_batch_size_count{model="m",version="1"} `); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	if count == 0 {
		return 0, errors.New("no batch size metrics")
	}
	return sum / count, nil
}

// loop calls f from c goroutines until dur passes and returns the latencies.
func loop(ctx context.Context, dur time.Duration, c int, f func() error) ([]time.Duration, int, time.Duration, error) {
	var (
		mu   sync.Mutex
		all  []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(dur)
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := f(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	return all, len(all), el, nil
}

func pct(lat []time.Duration, p int) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := (len(lat) - 1) * p / 100
	return float64(lat[i].Nanoseconds()) / 1e3
}
