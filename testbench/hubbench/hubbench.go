package hubbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/server"
)

// Aims the figures are compared with.
const (
	AimPointsPerSec   = 200_000
	AimFractionOfRaw  = 0.5
	AimBestRunQueryMS = 20.0
)

// Result is what Run measures.
type Result struct {
	MetricPointsPerSec float64 `json:"metric_points_per_sec"`
	SQLitePointsPerSec float64 `json:"sqlite_points_per_sec"`
	FractionOfRaw      float64 `json:"fraction_of_raw"`
	BestRunQueryMS     float64 `json:"best_run_query_ms"`     // median over the queries
	BestRunQueryP95MS  float64 `json:"best_run_query_p95_ms"` // 95th percentile
	Points             int     `json:"points"`
	Batch              int     `json:"batch"`
	Clients            int     `json:"clients"`
	QueryRuns          int     `json:"query_runs"`
	QueryMetrics       int     `json:"query_metrics"`
	QuerySteps         int     `json:"query_steps"`
}

type options struct {
	json                          bool
	points, batch, clients        int
	runs, metrics, steps, queries int
	dir                           string
}

// Run parses flags from args, runs the benchmark and writes a table (or,
// with --json, a JSON object) to w.
func Run(ctx context.Context, args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.json, "json", false, "print a JSON object instead of a table")
	fs.IntVar(&o.points, "points", 1_000_000, "metric points to ingest through the REST API")
	fs.IntVar(&o.batch, "batch", 1000, "points per REST batch")
	fs.IntVar(&o.clients, "clients", 4, "concurrent REST clients")
	fs.IntVar(&o.runs, "runs", 10_000, "runs of the best-run query data set")
	fs.IntVar(&o.metrics, "metrics", 20, "metrics per run of the query data set")
	fs.IntVar(&o.steps, "steps", 100, "steps per metric of the query data set")
	fs.IntVar(&o.queries, "queries", 50, "best-run queries to time")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.points < o.batch || o.batch < 1 || o.clients < 1 || o.runs < 1 || o.metrics < 1 || o.steps < 1 || o.queries < 1 {
		return errors.New("hub bench: --points must be >= --batch, and every count positive")
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "hubbench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	r, err := run(ctx, o)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmeasured\taim / limit\tok")
	okStr := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(tw, "metric_points_per_sec (REST, %d clients, batches of %d)\t%.0f\t>= %d\t%s\n", o.clients, o.batch, r.MetricPointsPerSec, AimPointsPerSec, okStr(r.MetricPointsPerSec >= AimPointsPerSec))
	fmt.Fprintf(tw, "sqlite_points_per_sec (raw prepared inserts, tx per batch)\t%.0f\t(the limit)\t\n", r.SQLitePointsPerSec)
	fmt.Fprintf(tw, "fraction_of_raw\t%.2f\t>= %.2f\t%s\n", r.FractionOfRaw, AimFractionOfRaw, okStr(r.FractionOfRaw >= AimFractionOfRaw))
	fmt.Fprintf(tw, "best_run_query_ms (median, %d runs × %d metrics × %d steps)\t%.2f\t< %.0f\t%s\n", o.runs, o.metrics, o.steps, r.BestRunQueryMS, AimBestRunQueryMS, okStr(r.BestRunQueryMS < AimBestRunQueryMS))
	fmt.Fprintf(tw, "best_run_query_p95_ms\t%.2f\t\t\n", r.BestRunQueryP95MS)
	return tw.Flush()
}

func run(ctx context.Context, o options) (Result, error) {
	res := Result{Points: o.points, Batch: o.batch, Clients: o.clients, QueryRuns: o.runs, QueryMetrics: o.metrics, QuerySteps: o.steps}
	log := slog.New(slog.DiscardHandler)

	// 1. Through the store, hub down: the query data set and the raw rate.
	st, err := server.OpenStore(ctx, o.dir, log)
	if err != nil {
		return res, err
	}
	if err := populate(ctx, st, o); err != nil {
		st.Close()
		return res, err
	}
	res.SQLitePointsPerSec, err = rawInserts(ctx, st, o)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}

	// 2. A real hub on loopback.
	cfg := server.DefaultConfig()
	cfg.Data = o.dir
	cfg.HTTP, cfg.MQTT, cfg.NATS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	srv, err := server.New(cfg, log)
	if err != nil {
		return res, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-srv.Ready():
	case err := <-done:
		done <- err
		return res, fmt.Errorf("hub: %w", err)
	}
	base := "http://" + srv.Addrs().HTTP + "/api/v1/workspaces"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.clients * 2}}

	if res.MetricPointsPerSec, err = ingest(ctx, hc, base, o); err != nil {
		return res, err
	}
	res.FractionOfRaw = res.MetricPointsPerSec / res.SQLitePointsPerSec
	res.BestRunQueryMS, res.BestRunQueryP95MS, err = query(ctx, hc, base, o)
	return res, err
}

// populate loads the query data set: o.runs runs, each with o.metrics
// metrics of o.steps steps, through the store's bulk import.
func populate(ctx context.Context, st *server.Store, o options) error {
	if _, err := st.CreateWorkspace(ctx, "query", ""); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const perTx = 100
	t0 := time.Now()
	for start := 0; start < o.runs; start += perTx {
		var runs []hub.ImportRun
		for i := start; i < min(start+perTx, o.runs); i++ {
			r := hub.ImportRun{RunCreate: hub.RunCreate{Experiment: "sweep", Name: "run-" + strconv.Itoa(i), Status: hub.StatusCompleted,
				Params: map[string]string{"lr": strconv.FormatFloat(rng.Float64(), 'g', 4, 64)}}}
			r.Metrics = make([]hub.MetricPoint, 0, o.metrics*o.steps)
			for m := range o.metrics {
				name := "m" + strconv.Itoa(m)
				for s := range o.steps {
					r.Metrics = append(r.Metrics, hub.MetricPoint{Name: name, Step: int64(s), Value: rng.Float64()})
				}
			}
			runs = append(runs, r)
		}
		if _, err := st.ImportRuns(ctx, "query", runs); err != nil {
			return fmt.Errorf("populate: %w", err)
		}
	}
	slog.Default().Debug("populated", "runs", o.runs, "took", time.Since(t0))
	return nil
}

// rawInserts measures plain prepared single-row INSERTs into the metrics
// table, one transaction per batch, at the store's durability settings,
// with the data shape of the REST measurement: o.clients runs written in
// rotation, 20 metrics per batch, steps increasing.
func rawInserts(ctx context.Context, st *server.Store, o options) (float64, error) {
	if _, err := st.CreateWorkspace(ctx, "raw", ""); err != nil {
		return 0, err
	}
	db := st.DB()
	runIDs := make([]int64, o.clients)
	for i := range runIDs {
		r, err := st.CreateRun(ctx, "raw", hub.RunCreate{Experiment: "raw"})
		if err != nil {
			return 0, err
		}
		if err := db.QueryRowContext(ctx, "SELECT id FROM runs WHERE uid = ?", r.ID).Scan(&runIDs[i]); err != nil {
			return 0, err
		}
	}
	names := make([]string, 20)
	for i := range names {
		names[i] = "m" + strconv.Itoa(i)
	}
	batches := o.points / o.batch / 2
	t0 := time.Now()
	now := time.Now().UnixNano()
	for b := range batches {
		first := (b / o.clients) * o.batch
		runID := runIDs[b%o.clients]
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			stmt, err := tx.PrepareContext(ctx, "INSERT OR IGNORE INTO metrics (run_id, name, step, time, value) VALUES (?, ?, ?, ?, ?)")
			if err != nil {
				return err
			}
			defer stmt.Close()
			for i := range o.batch {
				if _, err := stmt.ExecContext(ctx, runID, names[i%20], int64(first+i), now, float64(i)); err != nil {
					return err
				}
			}
			return tx.Commit()
		}()
		if err != nil {
			return 0, fmt.Errorf("raw inserts: %w", err)
		}
	}
	return float64(batches*o.batch) / time.Since(t0).Seconds(), nil
}

// body encodes one batch without reflection (the client side must not be
// the bottleneck of the measurement).
func body(buf []byte, first, n int) []byte {
	buf = append(buf[:0], `{"metrics":[`...)
	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":"m`...)
		buf = strconv.AppendInt(buf, int64(i%20), 10)
		buf = append(buf, `","value":`...)
		buf = strconv.AppendFloat(buf, float64(first+i)*0.001, 'g', -1, 64)
		buf = append(buf, `,"step":`...)
		buf = strconv.AppendInt(buf, int64(first+i), 10)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}

func ingest(ctx context.Context, hc *http.Client, base string, o options) (float64, error) {
	if err := postJSON(ctx, hc, base, `{"name":"ingest"}`, nil); err != nil {
		return 0, err
	}
	runs := make([]string, o.clients)
	for i := range runs {
		var r hub.Run
		if err := postJSON(ctx, hc, base+"/ingest/runs", `{"experiment":"ingest","status":"running"}`, &r); err != nil {
			return 0, err
		}
		runs[i] = r.ID
	}
	// Pre-encode the bodies so that the measurement is the hub's.
	batches := o.points / o.batch
	bodies := make([][]byte, batches)
	for i := range bodies {
		bodies[i] = body(nil, i*o.batch, o.batch)
	}
	var (
		next    = make(chan int, batches)
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for i := range batches {
		next <- i
	}
	close(next)
	t0 := time.Now()
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := base + "/ingest/runs/" + runs[c] + "/metrics"
			for i := range next {
				if err := postJSON(ctx, hc, url, bodies[i], nil); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	if first != nil {
		return 0, fmt.Errorf("ingest: %w", first)
	}
	return float64(batches*o.batch) / took.Seconds(), nil
}

func query(ctx context.Context, hc *http.Client, base string, o options) (median, p95 float64, err error) {
	var lat []float64
	for i := range o.queries {
		url := base + "/query/runs?experiment=sweep&order_by=metrics.m" + strconv.Itoa(i%o.metrics) + ":desc&top=1"
		t0 := time.Now()
		var runs []hub.Run
		if err := getJSON(ctx, hc, url, &runs); err != nil {
			return 0, 0, err
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		if len(runs) != 1 || len(runs[0].Metrics) != o.metrics {
			return 0, 0, fmt.Errorf("best-run query returned %d runs", len(runs))
		}
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*95/100)], nil
}

func postJSON[B string | []byte](ctx context.Context, hc *http.Client, url string, b B, v any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader([]byte(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return do(hc, req, v)
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	return do(hc, req, v)
}

func do(hc *http.Client, req *http.Request, v any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}
