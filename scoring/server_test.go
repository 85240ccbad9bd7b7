package scoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// env is a real scoring server on 127.0.0.1 with real ONNX Runtime.
type env struct {
	t    *testing.T
	reg  *scoring.Registry
	url  string
	keys []string
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newEnv(t *testing.T, cfg scoring.ServerConfig, rc scoring.RegistryConfig) *env {
	t.Helper()
	reg, err := scoring.NewRegistry(rc, discard())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scoring.NewServer(cfg, reg, discard())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := reg.Close(context.Background()); err != nil {
			t.Errorf("registry Close: %v", err)
		}
	})
	return &env{t: t, reg: reg, url: "http://" + ln.Addr().String(), keys: cfg.Keys}
}

// mlpPath writes onnxtest.MLP(in, hidden, out, seed) to a file.
func mlpPath(t testing.TB, in int, hidden []int, out int, seed int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("mlp-%d.onnx", seed))
	if err := os.WriteFile(p, onnxtest.MLP(in, hidden, out, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) load(name, version, path string, opts ...scoring.LoadOption) {
	e.t.Helper()
	r, err := ort.Open(path, ort.Config{}, discard())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.reg.Load(context.Background(), name, version, r, opts...); err != nil {
		e.t.Fatal(err)
	}
}

// do sends a request and returns status, headers and body.
func (e *env) do(method, path, body string, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if len(e.keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+e.keys[0])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

type inferResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name     string    `json:"name"`
		Datatype string    `json:"datatype"`
		Shape    []int64   `json:"shape"`
		Data     []float64 `json:"data"`
	} `json:"outputs"`
}

func inferBody(x []float32, rows int) string {
	b, _ := json.Marshal(map[string]any{"id": "req-1", "inputs": []any{map[string]any{
		"name": "input", "datatype": "FP32", "shape": []int{rows, len(x) / rows}, "data": x,
	}}})
	return string(b)
}

func closeTo(got []float64, want []float32, tol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-float64(want[i])) > tol*(1+math.Abs(float64(want[i]))) {
			return fmt.Errorf("value %d: %v, want %v", i, got[i], want[i])
		}
	}
	return nil
}

func TestHTTPInferMatchesReference(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{}, scoring.RegistryConfig{})
	e.load("mlp", "", mlpPath(t, 4, []int{8}, 3, 1))
	x := []float32{0.1, -0.2, 0.3, 0.4, 1, 2, 3, 4, -1, 0, 0.5, 0.25}
	code, _, body := e.do("POST", "/v2/models/mlp/infer", inferBody(x, 3))
	if code != 200 {
		t.Fatalf("infer: %d %s", code, body)
	}
	var resp inferResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "mlp" || resp.ModelVersion != "1" || resp.ID != "req-1" || len(resp.Outputs) != 1 {
		t.Fatalf("response %s", body)
	}
	o := resp.Outputs[0]
	if o.Name != "output" || o.Datatype != "FP32" || fmt.Sprint(o.Shape) != "[3 3]" {
		t.Fatalf("output %+v", o)
	}
	if err := closeTo(o.Data, onnxtest.MLPOutput(4, []int{8}, 3, 1, x), 1e-5); err != nil {
		t.Fatal(err)
	}

	// Nested data, a version path and a requested output.
	nested := `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[[0.1,-0.2,0.3,0.4]]}],"outputs":[{"name":"output"}]}`
	code, _, body = e.do("POST", "/v2/models/mlp/versions/1/infer", nested)
	if code != 200 {
		t.Fatalf("nested infer: %d %s", code, body)
	}
	resp = inferResponse{}
	json.Unmarshal(body, &resp)
	if err := closeTo(resp.Outputs[0].Data, onnxtest.MLPOutput(4, []int{8}, 3, 1, x[:4]), 1e-5); err != nil {
		t.Fatal(err)
	}

	// Azure-style /score, with one example and with a batch.
	for _, b := range []string{`{"data": [0.1,-0.2,0.3,0.4]}`, `{"data": [[0.1,-0.2,0.3,0.4]]}`, `{"input": [[0.1,-0.2,0.3,0.4]]}`} {
		for _, path := range []string{"/score", "/score/mlp"} {
			code, _, body = e.do("POST", path, b)
			if code != 200 {
				t.Fatalf("%s %s: %d %s", path, b, code, body)
			}
			var sr map[string][][]float64
			if err := json.Unmarshal(body, &sr); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if err := closeTo(sr["output"][0], onnxtest.MLPOutput(4, []int{8}, 3, 1, x[:4]), 1e-5); err != nil {
				t.Fatalf("%s %s: %v", path, b, err)
			}
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{MaxBodyBytes: 4096, MaxHeaderBytes: 4096}, scoring.RegistryConfig{})
	e.load("mlp", "", mlpPath(t, 4, []int{8}, 3, 1))
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"unknown model", "POST", "/v2/models/nope/infer", inferBody(make([]float32, 4), 1), 404, `model \"nope\": model not found`},
		{"unknown version", "GET", "/v2/models/mlp/versions/9", "", 404, `version \"9\"`},
		{"bad json", "POST", "/v2/models/mlp/infer", `{"inputs":`, 400, "json at offset"},
		{"wrong datatype", "POST", "/v2/models/mlp/infer", `{"inputs":[{"name":"input","datatype":"FP64","shape":[1,4],"data":[1,2,3,4]}]}`, 400, `input \"input\": invalid input: datatype FP64, want FP32`},
		{"wrong dim", "POST", "/v2/models/mlp/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[2,2],"data":[1,2,3,4]}]}`, 400, `dimension 1 is 2, want 4`},
		{"wrong rank", "POST", "/v2/models/mlp/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}`, 400, `rank 1`},
		{"unknown input", "POST", "/v2/models/mlp/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`, 400, `input \"x\": invalid input: unknown input`},
		{"missing input", "POST", "/v2/models/mlp/infer", `{"inputs":[]}`, 400, `input \"input\": invalid input: missing`},
		{"unknown output", "POST", "/v2/models/mlp/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}],"outputs":[{"name":"z"}]}`, 400, `requested output \"z\"`},
		{"score unknown input", "POST", "/score", `{"x": [1,2,3,4]}`, 400, `unknown input`},
		{"too large", "POST", "/v2/models/mlp/infer", `{"pad":"` + strings.Repeat("a", 5000) + `"}`, 413, "larger than the limit of 4096 bytes"},
		{"no route", "GET", "/v3", "", 404, "no route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := e.do(tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var er struct{ Error string }
			if err := json.Unmarshal(body, &er); err != nil || er.Error == "" {
				t.Fatalf("body %s is not {\"error\": ...}", body)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("body %s, want it to contain %s", body, tc.want)
			}
		})
	}
	code, _, _ := e.do("GET", "/v2/health/live", "", "X-Big", strings.Repeat("b", 20000))
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("large header: status %d, want 431", code)
	}
	code, _, _ = e.do("DELETE", "/v2/models/mlp", "")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE model: status %d, want 405", code)
	}
}

func TestHTTPMetadataHealthMetrics(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{Version: "test"}, scoring.RegistryConfig{})
	if code, _, _ := e.do("GET", "/v2/health/ready", ""); code != 503 {
		t.Errorf("ready with no model: %d, want 503", code)
	}
	e.load("mlp", "", mlpPath(t, 4, []int{8}, 3, 1))
	e.load("mlp", "7", mlpPath(t, 4, []int{8}, 3, 2), scoring.NotCurrent())
	e.load("other", "", mlpPath(t, 2, nil, 1, 3))
	checks := []struct{ path, want string }{
		{"/v2/health/live", `{"live":true}`},
		{"/v2/health/ready", `{"ready":true}`},
		{"/v2", `{"extensions":[],"name":"atelier-scoring","version":"test"}`},
		{"/v2/models/mlp", `{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],"name":"mlp","outputs":[{"name":"output","datatype":"FP32","shape":[-1,3]}],"platform":"onnxruntime_onnx","versions":["1","7"]}`},
		{"/v2/models/mlp/versions/7", `"versions":["7"]`},
		{"/v2/models/mlp/ready", `{"name":"mlp","ready":true,"version":"1"}`},
		{"/v2/models/mlp/versions/7/ready", `{"name":"mlp","ready":true,"version":"7"}`},
		{"/swagger.json", `"/score/other"`},
	}
	for _, c := range checks {
		code, _, body := e.do("GET", c.path, "")
		if code != 200 || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s = %d %s, want 200 containing %s", c.path, code, body, c.want)
		}
	}
	code, _, body := e.do("GET", "/swagger.json", "")
	var doc struct {
		Swagger     string
		Paths       map[string]any
		Definitions map[string]map[string]any
	}
	if err := json.Unmarshal(body, &doc); code != 200 || err != nil || doc.Swagger != "2.0" || len(doc.Paths) != 2 || doc.Definitions["mlp_input"] == nil {
		t.Errorf("swagger: %d %v %s", code, err, body)
	}
	if code, _, body := e.do("POST", "/score", `{"data":[1,2,3,4]}`); code != 400 || !strings.Contains(string(body), "2 models are loaded") {
		t.Errorf("/score with two models: %d %s", code, body)
	}

	e.do("POST", "/v2/models/mlp/infer", inferBody(make([]float32, 4), 1))
	e.do("POST", "/v2/models/mlp/infer", `{"inputs":[]}`)
	e.do("POST", "/v2/models/nope/infer", `{}`)
	_, hdr, body := e.do("GET", "/metrics", "")
	text := string(body)
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Errorf("metrics content type %q", hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"atelier_scoring_models_loaded 3\n",
		`atelier_scoring_requests_total{model="mlp",version="1",outcome="ok"} 1` + "\n",
		`atelier_scoring_requests_total{model="mlp",version="1",outcome="invalid"} 1` + "\n",
		`atelier_scoring_queue_seconds_count{model="mlp",version="1"} 1` + "\n",
		`atelier_scoring_compute_seconds_bucket{model="mlp",version="1",le="+Inf"} 1` + "\n",
		`atelier_scoring_batch_size_sum{model="mlp",version="1"} 1` + "\n",
		"# TYPE atelier_scoring_request_duration_seconds histogram\n",
		"atelier_scoring_unknown_model_requests_total 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func TestHTTPKeys(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{Keys: []string{"primary-key", "secondary-key"}}, scoring.RegistryConfig{})
	e.load("mlp", "", mlpPath(t, 4, []int{8}, 3, 1))
	body := inferBody(make([]float32, 4), 1)
	e.keys = nil
	for _, c := range []struct {
		auth string
		code int
	}{
		{"", 401}, {"Bearer wrong", 401}, {"Bearer primary-key-x", 401}, {"Basic primary-key", 401},
		{"Bearer primary-key", 200}, {"Bearer secondary-key", 200}, {"bearer secondary-key", 200},
	} {
		var hdr []string
		if c.auth != "" {
			hdr = []string{"Authorization", c.auth}
		}
		code, h, b := e.do("POST", "/v2/models/mlp/infer", body, hdr...)
		if code != c.code {
			t.Errorf("Authorization %q: %d %s, want %d", c.auth, code, b, c.code)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	for _, p := range []string{"/v2/health/live", "/v2/health/ready"} {
		if code, _, _ := e.do("GET", p, ""); code != 200 {
			t.Errorf("%s without key: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/metrics", "/swagger.json", "/v2", "/v2/models/mlp"} {
		if code, _, _ := e.do("GET", p, ""); code != 401 {
			t.Errorf("%s without key: %d, want 401", p, code)
		}
	}
}

// TestHotSwapUnderLoad swaps the model twice while clients send requests
// without pause: no request may fail, and every answer must be the exact
// output of the version that reports having served it.
func TestHotSwapUnderLoad(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{}, scoring.RegistryConfig{Batch: scoring.BatchConfig{MaxBatch: 4}})
	seeds := map[string]int64{"1": 11, "2": 12, "3": 13}
	paths := map[string]string{}
	for v, s := range seeds {
		paths[v] = mlpPath(t, 4, []int{16}, 2, s)
	}
	e.load("m", "1", paths["1"])
	x := []float32{0.5, -1, 2, 0.25}
	want := map[string][]float32{}
	for v, s := range seeds {
		want[v] = onnxtest.MLPOutput(4, []int{16}, 2, s, x)
	}
	body := inferBody(x, 1)

	var (
		stop     atomic.Bool
		ok, fail atomic.Int64
		mu       sync.Mutex
		served   = map[string]int{}
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 6 {
		wg.Go(func() {
			for !stop.Load() {
				resp, err := client.Post(e.url+"/v2/models/m/infer", "application/json", strings.NewReader(body))
				if err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var r inferResponse
				if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				if err := closeTo(r.Outputs[0].Data, want[r.ModelVersion], 1e-5); err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("version %q: %v", r.ModelVersion, err))
					continue
				}
				ok.Add(1)
				mu.Lock()
				served[r.ModelVersion]++
				mu.Unlock()
			}
		})
	}
	waitServed := func(n int64) {
		for start := ok.Load(); ok.Load() < start+n && fail.Load() == 0; {
			runtime.Gosched()
		}
	}
	waitServed(50)
	for _, v := range []string{"2", "3"} {
		r, err := ort.Open(paths[v], ort.Config{}, discard())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.Swap(context.Background(), "m", v, r); err != nil {
			t.Fatalf("swap to %s: %v", v, err)
		}
		waitServed(50)
	}
	stop.Store(true)
	wg.Wait()
	if fail.Load() != 0 {
		t.Fatalf("%d of %d requests failed during hot swap; first: %v", fail.Load(), ok.Load()+fail.Load(), firstErr.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if served["1"] == 0 || served["3"] == 0 {
		t.Errorf("served by version: %v; want versions 1 and 3 to serve", served)
	}
	info, _ := e.reg.Model("m")
	if info.Current != "3" || len(info.Versions) != 1 {
		t.Errorf("after swaps: %+v", info)
	}
	t.Logf("%d requests, by version %v", ok.Load(), served)
}

func TestLoadRejectsBadModel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.onnx")
	os.WriteFile(p, []byte("not a model"), 0o644)
	if _, err := ort.Open(p, ort.Config{}, discard()); err == nil {
		t.Fatal("opened a file that is not ONNX")
	}
}

// TestHTTPBatchingWithORT sends four concurrent requests of different sizes
// to a real ONNX Runtime model with MaxBatch 4 and a max delay far beyond
// the test, so they must run as one batch; each answer must still be its own
// rows' output.
func TestHTTPBatchingWithORT(t *testing.T) {
	e := newEnv(t, scoring.ServerConfig{}, scoring.RegistryConfig{Batch: scoring.BatchConfig{MaxBatch: 4, MaxDelay: time.Hour}})
	e.load("mlp", "", mlpPath(t, 3, []int{5}, 2, 9))
	var wg sync.WaitGroup
	for i, rows := range []int{1, 3, 2, 1} {
		wg.Go(func() {
			x := make([]float32, 3*rows)
			for k := range x {
				x[k] = float32(i*10+k) / 7
			}
			code, _, body := e.do("POST", "/v2/models/mlp/infer", inferBody(x, rows))
			if code != 200 {
				t.Errorf("request %d: %d %s", i, code, body)
				return
			}
			var r inferResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Error(err)
				return
			}
			if fmt.Sprint(r.Outputs[0].Shape) != fmt.Sprintf("[%d 2]", rows) {
				t.Errorf("request %d: shape %v", i, r.Outputs[0].Shape)
			}
			if err := closeTo(r.Outputs[0].Data, onnxtest.MLPOutput(3, []int{5}, 2, 9, x), 1e-5); err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	_, _, m := e.do("GET", "/metrics", "")
	for _, want := range []string{
		`atelier_scoring_batch_size_count{model="mlp",version="1"} 1` + "\n",
		`atelier_scoring_batch_size_sum{model="mlp",version="1"} 4` + "\n",
		`atelier_scoring_requests_total{model="mlp",version="1",outcome="ok"} 4` + "\n",
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
