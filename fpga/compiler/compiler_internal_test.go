package compiler

import (
	"math"
	"testing"
)

func TestMultiplier(t *testing.T) {
	for _, M := range []float64{1, 0.5, 0.75, 1e-3, 3.3e-5, 0.999999, 7.5, 1e-12, 123.456} {
		m, s := multiplier(M)
		if s < 0 || s > 62 {
			t.Fatalf("M=%g: shift %d out of range", M, s)
		}
		got := float64(m) / math.Ldexp(1, int(s))
		if rel := math.Abs(got-M) / M; rel > 1e-8 && M > 1e-9 {
			t.Errorf("M=%g: m=%d s=%d gives %g (rel error %g)", M, m, s, got, rel)
		}
	}
	if m, s := multiplier(0); m != 0 || s != 0 {
		t.Errorf("multiplier(0) = %d, %d", m, s)
	}
}

func TestQuantizeWeightsPerColumn(t *testing.T) {
	// Column 0 is 100× larger than column 1: per-column scales keep both exact at the extremes.
	w := []float64{100, 1, -40, -0.25, 0, 0}
	q, s := quantizeWeights(w, 3, 2)
	if s[0] != 100.0/127 || s[1] != 1.0/127 {
		t.Fatalf("scales %v", s)
	}
	want := []int8{127, 127, -51, -32, 0, 0} // -50.8 and -31.75
	for i := range want {
		if q[i] != want[i] {
			t.Fatalf("q = %v, want %v", q, want)
		}
	}
}

func TestBroadcast(t *testing.T) {
	img := image(2, 1, 3)
	cases := []struct {
		c    constant
		want []float64
		err  bool
	}{
		{constant{dims: nil, data: []float64{7}}, []float64{7, 7, 7, 7, 7, 7}, false},
		{constant{dims: []int64{2, 1, 1}, data: []float64{1, 2}}, []float64{1, 1, 1, 2, 2, 2}, false},
		{constant{dims: []int64{1, 2, 1, 1}, data: []float64{1, 2}}, []float64{1, 1, 1, 2, 2, 2}, false},
		{constant{dims: []int64{3}, data: []float64{1, 2, 3}}, []float64{1, 2, 3, 1, 2, 3}, false},
		{constant{dims: []int64{2, 1, 3}, data: []float64{1, 2, 3, 4, 5, 6}}, []float64{1, 2, 3, 4, 5, 6}, false},
		{constant{dims: []int64{2}, data: []float64{1, 2}}, nil, true},
		{constant{dims: []int64{4, 2, 1, 3}, data: make([]float64, 24)}, nil, true},
	}
	for i, c := range cases {
		got, err := broadcast(c.c, img)
		if (err != nil) != c.err {
			t.Fatalf("case %d: err %v", i, err)
		}
		for j := range c.want {
			if got[j] != c.want[j] {
				t.Fatalf("case %d: %v, want %v", i, got, c.want)
			}
		}
	}
}
