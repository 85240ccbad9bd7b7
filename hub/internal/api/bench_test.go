package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/atelier-ml/atelier/hub/internal/api"
)

func metricsBody(first, n int) []byte {
	b := []byte(`{"metrics":[`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"name":"m%d","value":%g,"step":%d}`, i%20, float64(first+i)*0.001, first+i)
	}
	return append(b, "]}"...)
}

// BenchmarkIngestREST posts batches of 1,000 points from 4 concurrent
// clients, each to its own run, over real HTTP; one op is one batch.
func BenchmarkIngestREST(b *testing.B) {
	const clients = 4
	e := newEnv(b, api.Config{})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	urls := make([]string, clients)
	for i := range urls {
		urls[i] = e.url + ws + "/w/runs/" + e.run("w", "e").ID + "/metrics"
	}
	const nb = 256
	bodies := make([][]byte, nb)
	for i := range bodies {
		bodies[i] = metricsBody(i*1000, 1000)
	}
	var (
		mu sync.Mutex
		n  int
		wg sync.WaitGroup
	)
	b.ResetTimer()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := n
				n++
				mu.Unlock()
				if i >= b.N {
					return
				}
				resp, err := http.Post(urls[c], "application/json", bytes.NewReader(bodies[(i/clients)%nb]))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "points/s")
}
