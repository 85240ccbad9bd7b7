package scoring

import (
	"context"
	"log/slog"
	"math"
	"testing"
)

func TestStatsCountsAndRetires(t *testing.T) {
	reg, err := NewRegistry(RegistryConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := reg.Load(ctx, "m", "1", newSumRunner(2)); err != nil {
		t.Fatal(err)
	}
	v, err := reg.Acquire("m", "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := v.Infer(ctx, []Tensor{rows(1, 2, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Infer(ctx, []Tensor{rows(1, 3, 1)}); err == nil {
		t.Fatal("Infer with a wrong width succeeded")
	}
	v.Release()
	st := reg.Stats()
	if len(st) != 1 || st[0].Model != "m" || st[0].Version != "1" || st[0].Retired {
		t.Fatalf("Stats = %+v, want one live m:1", st)
	}
	first := st[0]
	if first.Requests["ok"] != 3 || first.Requests["invalid"] != 1 || first.Errors() != 1 {
		t.Errorf("Requests = %v, want ok 3, invalid 1", first.Requests)
	}
	if n := first.Request.Count(); n != 4 {
		t.Errorf("request histogram count %d, want 4", n)
	}
	if _, err := reg.Swap(ctx, "m", "2", newSumRunner(2)); err != nil {
		t.Fatal(err)
	}
	st = reg.Stats()
	if len(st) != 2 || !st[0].Retired || st[0].ID != first.ID || st[0].Requests["ok"] != 3 || st[1].Version != "2" || st[1].ID <= first.ID {
		t.Fatalf("Stats after swap = %+v, want retired m:1 with its totals, then live m:2", st)
	}
	d := st[0].Request.Sub(first.Request)
	if d.Count() != 0 {
		t.Errorf("Sub of equal snapshots counts %d", d.Count())
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := HistogramStats{Bounds: []float64{1, 2, 4}, Counts: []uint64{0, 10, 0, 0}}
	if q := h.Quantile(0.5); q != 1.5 {
		t.Errorf("p50 = %v, want 1.5 (middle of the (1,2] bucket)", q)
	}
	h.Counts = []uint64{0, 0, 0, 5}
	if q := h.Quantile(0.99); q != 4 {
		t.Errorf("p99 in overflow = %v, want the last bound 4", q)
	}
	if q := (HistogramStats{Bounds: []float64{1}, Counts: []uint64{0, 0}}).Quantile(0.5); !math.IsNaN(q) {
		t.Errorf("empty quantile = %v, want NaN", q)
	}
}
