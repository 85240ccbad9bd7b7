package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

// metricsHub accepts metrics, params and tags like the hub does, and can be
// told to fail the next requests.
type metricsHub struct {
	mu      sync.Mutex
	points  []hub.MetricPoint
	batches []int
	params  map[string]string
	tags    map[string]string
	fail    int // status to answer with while > 0
	got     chan int
}

func (h *metricsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != 0 {
		w.WriteHeader(h.fail)
		json.NewEncoder(w).Encode(hub.ErrorBody{Error: "failing on purpose", Code: "x"})
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/metrics"):
		var body struct{ Metrics []hub.MetricPoint }
		json.NewDecoder(r.Body).Decode(&body)
		h.points = append(h.points, body.Metrics...)
		h.batches = append(h.batches, len(body.Metrics))
		if h.got != nil {
			h.got <- len(body.Metrics)
		}
	case strings.HasSuffix(r.URL.Path, "/params"):
		var body struct{ Params map[string]string }
		json.NewDecoder(r.Body).Decode(&body)
		for k, v := range body.Params {
			h.params[k] = v
		}
	case strings.HasSuffix(r.URL.Path, "/tags"):
		var body struct{ Tags map[string]string }
		json.NewDecoder(r.Body).Decode(&body)
		for k, v := range body.Tags {
			h.tags[k] = v
		}
	}
	w.Write([]byte(`{}`))
}

func newMetricsHub(t *testing.T) (*metricsHub, *client.Client) {
	h := &metricsHub{params: map[string]string{}, tags: map[string]string{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, client.New(srv.URL)
}

func TestRunLoggerFlushesAtMaxPoints(t *testing.T) {
	h, c := newMetricsHub(t)
	h.got = make(chan int, 10)
	l := c.NewRunLogger("w", "r", client.BatchOptions{MaxPoints: 5, Interval: time.Hour})
	for i := range 5 {
		l.Metric("loss", float64(i), int64(i))
	}
	if n := <-h.got; n != 5 { // the background flush, kicked by the 5th point
		t.Fatalf("first batch has %d points, want 5", n)
	}
	l.Metric("loss", 9, 9)
	l.Param("lr", "0.1")
	l.Tag("phase", "train")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.points) != 6 || h.points[5].Value != 9 || h.points[5].Time.IsZero() {
		t.Errorf("points %+v, want 6 ending with value 9 and a timestamp", h.points)
	}
	if h.params["lr"] != "0.1" || h.tags["phase"] != "train" {
		t.Errorf("params %v tags %v", h.params, h.tags)
	}
	if err := l.Close(context.Background()); !errors.Is(err, client.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func TestRunLoggerRetriesServerErrorsDropsRefusals(t *testing.T) {
	h, c := newMetricsHub(t)
	l := c.NewRunLogger("w", "r", client.BatchOptions{MaxPoints: 100, Interval: time.Hour})
	defer l.Close(context.Background())
	ctx := context.Background()

	h.mu.Lock()
	h.fail = http.StatusServiceUnavailable
	h.mu.Unlock()
	l.Metric("a", 1, 1)
	l.Param("p", "1")
	if err := l.Flush(ctx); err == nil {
		t.Fatal("flush to a failing hub reported no error")
	}
	h.mu.Lock()
	h.fail = 0
	h.mu.Unlock()
	l.Metric("a", 2, 2)
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("flush after recovery: %v", err)
	}
	h.mu.Lock()
	if len(h.points) != 2 || h.points[0].Value != 1 || h.points[1].Value != 2 || h.params["p"] != "1" {
		t.Errorf("after retry: points %+v params %v, want values 1,2 in order and p=1", h.points, h.params)
	}
	h.fail = http.StatusBadRequest
	h.mu.Unlock()

	l.Metric("bad name", 3, 3)
	err := l.Flush(ctx)
	if !errors.Is(err, hub.ErrInvalid) {
		t.Fatalf("flush refused by the hub: %v, want ErrInvalid", err)
	}
	h.mu.Lock()
	h.fail = 0
	h.mu.Unlock()
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("flush after a refusal: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.points) != 2 {
		t.Errorf("refused point was resent: %+v", h.points)
	}
}

func TestRunLoggerConcurrent(t *testing.T) {
	h, c := newMetricsHub(t)
	// The buffer holds all 800 points, so none is dropped however far the
	// flusher falls behind on a loaded machine (this test is about
	// concurrent callers and batch sizes, not the bound).
	l := c.NewRunLogger("w", "r", client.BatchOptions{MaxPoints: 7, MaxBuffered: 800, Interval: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				l.Metric("m", float64(g), int64(i))
			}
		}()
	}
	wg.Wait()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.points) != 800 {
		t.Errorf("hub got %d points, want 800", len(h.points))
	}
	for _, n := range h.batches {
		if n > 7 {
			t.Errorf("batch of %d points exceeds MaxPoints 7", n)
		}
	}
}

func TestRunLoggerBoundedBuffer(t *testing.T) {
	h, c := newMetricsHub(t)
	h.mu.Lock()
	h.fail = http.StatusServiceUnavailable
	h.mu.Unlock()
	l := c.NewRunLogger("w", "r", client.BatchOptions{MaxPoints: 1000, MaxBuffered: 10, Interval: time.Hour})
	for i := range 25 {
		l.Metric("m", float64(i), int64(i))
	}
	err := l.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dropped the 15 oldest") {
		t.Fatalf("flush: %v, want a report of 15 dropped points", err)
	}
	h.mu.Lock()
	h.fail = 0
	h.mu.Unlock()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.points) != 10 || h.points[0].Value != 15 || h.points[9].Value != 24 {
		t.Errorf("hub got %d points %+v, want the newest 10 (15..24)", len(h.points), h.points)
	}
}
