package scoring

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// TestHTTPOverload checks the two refusals under overload over real HTTP:
// the concurrency limit (503) and the full queue (429), both with
// Retry-After, while the only worker is held inside the backend.
func TestHTTPOverload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		srv      ServerConfig
		batch    BatchConfig
		inflight int // requests to park before the probe
		code     int
	}{
		{"concurrency limit", ServerConfig{MaxConcurrent: 1}, BatchConfig{MaxBatch: 1, Workers: 1}, 1, http.StatusServiceUnavailable},
		{"queue full", ServerConfig{}, BatchConfig{MaxBatch: 1, Workers: 1, QueueSize: 1}, 2, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := slog.New(slog.DiscardHandler)
			reg, err := NewRegistry(RegistryConfig{Batch: tc.batch}, log)
			if err != nil {
				t.Fatal(err)
			}
			r := newSumRunner(2)
			if _, err := reg.Load(context.Background(), "m", "", r); err != nil {
				t.Fatal(err)
			}
			r.started, r.gate = make(chan struct{}, 8), make(chan struct{})
			srv, err := NewServer(tc.srv, reg, log)
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
			url := "http://" + ln.Addr().String() + "/v2/models/m/infer"
			body := `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`
			post := func() (int, http.Header, string) {
				resp, err := http.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return 0, nil, ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, string(b)
			}
			parked := make(chan int, tc.inflight)
			for range tc.inflight {
				go func() { c, _, _ := post(); parked <- c }()
			}
			<-r.started // the worker holds one request
			v, err := reg.Acquire("m", "")
			if err != nil {
				t.Fatal(err)
			}
			for len(v.b.queue) < tc.inflight-1 {
				runtime.Gosched()
			}
			v.Release()
			code, hdr, b := post()
			if code != tc.code || hdr.Get("Retry-After") == "" || !strings.Contains(b, `"error"`) {
				t.Errorf("overloaded request: %d Retry-After=%q %s; want %d with Retry-After", code, hdr.Get("Retry-After"), b, tc.code)
			}
			close(r.gate)
			for range tc.inflight {
				if c := <-parked; c != 200 {
					t.Errorf("parked request: %d, want 200", c)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			reg.Close(context.Background())
		})
	}
}
