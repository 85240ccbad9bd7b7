package scoring

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync/atomic"
)

// Outcomes of a request, the "outcome" label of
// atelier_scoring_requests_total.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeInvalid
	outcomeQueueFull
	outcomeUnavailable
	outcomeTimeout
	outcomeCanceled
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "invalid", "queue_full", "unavailable", "timeout", "canceled", "error"}

// histogram is a lock-free Prometheus histogram.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// write writes the _bucket, _sum and _count series; labels is the rendered
// label set without braces ("" for none).
func (h *histogram) write(w io.Writer, name, labels string) {
	sep := ""
	if labels != "" {
		sep = ","
	}
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{%s%sle=\"%s\"} %d\n", name, labels, sep, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", name, labels, sep, cum)
	if labels != "" {
		labels = "{" + labels + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %s\n", name, labels, strconv.FormatFloat(math.Float64frombits(h.sum.Load()), 'g', -1, 64))
	fmt.Fprintf(w, "%s_count%s %d\n", name, labels, cum)
}

// Latency buckets from 25µs to 10s.
var latencyBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10}

var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128}

// versionMetrics are the series of one model version; the hot path only
// touches atomics.
type versionMetrics struct {
	requests [numOutcomes]atomic.Uint64
	queue    *histogram // time from enqueue to run start
	compute  *histogram // time of one backend run (a batch)
	request  *histogram // time in the server for one request
	batch    *histogram // requests per run
}

func newVersionMetrics() *versionMetrics {
	return &versionMetrics{
		queue:   newHistogram(latencyBuckets),
		compute: newHistogram(latencyBuckets),
		request: newHistogram(latencyBuckets),
		batch:   newHistogram(batchBuckets),
	}
}

// Metric names, documented in docs/scoring.md.
const (
	metricRequests      = "atelier_scoring_requests_total"
	metricQueueSeconds  = "atelier_scoring_queue_seconds"
	metricCompute       = "atelier_scoring_compute_seconds"
	metricRequestSecs   = "atelier_scoring_request_duration_seconds"
	metricBatchSize     = "atelier_scoring_batch_size"
	metricModelsLoaded  = "atelier_scoring_models_loaded"
	metricHTTPInFlight  = "atelier_scoring_http_requests_in_flight"
	metricUnknownModels = "atelier_scoring_unknown_model_requests_total"
	metricUnauthorized  = "atelier_scoring_unauthorized_requests_total"
	metricOverloaded    = "atelier_scoring_overloaded_requests_total"
)

func labelValue(s string) string {
	// Prometheus text format escapes backslash, double quote and newline.
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
