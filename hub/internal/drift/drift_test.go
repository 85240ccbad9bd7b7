package drift

import (
	"math"
	"strconv"
	"testing"

	"github.com/atelier-ml/atelier/internal/sketch"
)

func phi(x float64) float64 { return 0.5 * (1 + math.Erf(x/math.Sqrt2)) }

// invPhi inverts phi by bisection (independent of the code under test).
func invPhi(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 200 {
		mid := (lo + hi) / 2
		if phi(mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// normal returns a sketch of n evenly spaced quantiles of N(mu, sigma²).
func normal(n int, mu, sigma float64) *sketch.Sketch {
	s := sketch.New()
	for j := range n {
		s.Add(mu + sigma*invPhi((float64(j)+0.5)/float64(n)))
	}
	return s
}

// wantShiftPSI is the closed-form PSI of N(mu, 1) against N(0, 1) on the
// deciles of N(0, 1).
func wantShiftPSI(mu float64) float64 {
	var psi float64
	prev := 0.0
	for i := 1; i <= 10; i++ {
		c := 1.0
		if i < 10 {
			c = phi(invPhi(float64(i)/10) - mu)
		}
		q := c - prev
		prev = c
		psi += (q - 0.1) * math.Log(q/0.1)
	}
	return psi
}

func TestIdentical(t *testing.T) {
	b := normal(5000, 3, 2)
	r := Config{}.Compare(b, normal(5000, 3, 2))
	if r.PSI != 0 || r.KS != 0 || !r.Judged || r.Drifting {
		t.Fatalf("identical inputs: %+v, want PSI 0, KS 0, judged, not drifting", r)
	}
}

func TestShiftedNormal(t *testing.T) {
	base := normal(20000, 0, 1)
	for _, c := range []struct {
		mu       float64
		drifting bool
	}{
		{0.1, false}, {0.25, false}, {0.5, true}, {1, true},
	} {
		want := wantShiftPSI(c.mu)
		r := Config{}.Compare(base, normal(20000, c.mu, 1))
		if math.Abs(r.PSI-want) > 0.05*want+0.002 {
			t.Errorf("mu %g: PSI %.4f, closed form %.4f", c.mu, r.PSI, want)
		}
		wantKS := 2*phi(c.mu/2) - 1
		if math.Abs(r.KS-wantKS) > 0.01 {
			t.Errorf("mu %g: KS %.4f, closed form %.4f", c.mu, r.KS, wantKS)
		}
		if r.Drifting != c.drifting {
			t.Errorf("mu %g: drifting %v with PSI %.3f, want %v", c.mu, r.Drifting, r.PSI, c.drifting)
		}
	}
	// Sanity of the closed form itself: known values for a 0.5σ shift.
	if w := wantShiftPSI(0.5); w < 0.2 || w > 0.3 {
		t.Errorf("closed-form PSI for 0.5σ = %.4f, expected about 0.25", w)
	}
}

func TestEmptyBinsUseEpsilon(t *testing.T) {
	b, c := sketch.New(), sketch.New()
	for i := range 1000 {
		b.Add(float64(i%10 + 1)) // ten values, one per decile
		c.Add(1)                 // all in the first bin
	}
	// Mass 1 in bin 0 and Epsilon in the other nine:
	// (1-0.1)ln(1/0.1) + 9·(ε-0.1)ln(ε/0.1).
	want := 0.9*math.Log(10) + 9*(Epsilon-0.1)*math.Log(Epsilon/0.1)
	r := Config{}.Compare(b, c)
	if math.Abs(r.PSI-want) > 1e-9 {
		t.Errorf("PSI %.6f, want %.6f", r.PSI, want)
	}
	if math.Abs(r.KS-0.9) > 1e-12 {
		t.Errorf("KS %g, want 0.9", r.KS)
	}
}

func TestMinCount(t *testing.T) {
	b := normal(2000, 0, 1)
	c := normal(100, 2, 1)
	r := Config{}.Compare(b, c)
	if r.Judged || r.Drifting || !(r.PSI > 1) {
		t.Errorf("100 values under MinCount %d: %+v, want PSI computed but not judged", DefaultMinCount, r)
	}
	r = Config{MinCount: 50}.Compare(b, c)
	if !r.Judged || !r.Drifting {
		t.Errorf("with MinCount 50: %+v, want judged and drifting", r)
	}
	r = Config{}.Compare(b, sketch.New())
	if !math.IsNaN(r.PSI) || r.Judged {
		t.Errorf("empty current: %+v, want NaN, not judged", r)
	}
	if _, err := (Config{Threshold: -1}).WithDefaults(); err == nil {
		t.Error("negative threshold accepted")
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
