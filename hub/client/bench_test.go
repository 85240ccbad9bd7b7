package client_test

import (
	"context"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

// BenchmarkRunLoggerMetric measures recording one point, the training
// loop's side of RunLogger (sending happens in the background, and drops
// the oldest points once the buffer is full), with a real hub receiving.
func BenchmarkRunLoggerMetric(b *testing.B) {
	c := startHub(b)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "w", ""); err != nil {
		b.Fatal(err)
	}
	r, err := c.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	if err != nil {
		b.Fatal(err)
	}
	l := c.NewRunLogger("w", r.ID, client.BatchOptions{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Metric("loss", 0.5, int64(i))
	}
	// Recording outruns any hub here, so the bounded buffer drops points;
	// that is the behaviour under test, not a failure.
	if err := l.Close(ctx); err != nil {
		b.Log(err)
	}
}

// BenchmarkLogMetrics measures sending batches of 1000 points to a real
// hub and having them committed (points/s is reported).
func BenchmarkLogMetrics(b *testing.B) {
	c := startHub(b)
	ctx := context.Background()
	if _, err := c.CreateWorkspace(ctx, "w", ""); err != nil {
		b.Fatal(err)
	}
	r, err := c.CreateRun(ctx, "w", hub.RunCreate{Experiment: "e"})
	if err != nil {
		b.Fatal(err)
	}
	pts := make([]hub.MetricPoint, 1000)
	step := int64(0)
	for b.Loop() {
		for i := range pts {
			pts[i] = hub.MetricPoint{Name: "loss", Value: 0.5, Step: step}
			step++
		}
		if err := c.LogMetrics(ctx, "w", r.ID, pts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(pts))/b.Elapsed().Seconds(), "points/s")
}
