package sketch

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"google.golang.org/protobuf/proto"
)

// exact returns the value of rank floor(q*(n-1)) of sorted, the rank
// Quantile promises.
func exact(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

func checkClose(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(want) < MinValue {
		if math.Abs(got) > MinValue {
			t.Errorf("%s = %g, want ~0 (exact %g)", what, got, want)
		}
		return
	}
	if rel := math.Abs(got-want) / math.Abs(want); rel > RelativeAccuracy+1e-9 {
		t.Errorf("%s = %g, exact %g: relative error %.4g > %g", what, got, want, rel, RelativeAccuracy)
	}
}

func TestQuantileAccuracy(t *testing.T) {
	dists := []struct {
		name string
		gen  func(r *rand.Rand) float64
	}{
		{"uniform", func(r *rand.Rand) float64 { return r.Float64() * 100 }},
		{"normal", func(r *rand.Rand) float64 { return r.NormFloat64()*3 + 1 }},
		{"lognormal", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64() * 4) }},
		{"exponential", func(r *rand.Rand) float64 { return r.ExpFloat64() * 1e-4 }},
		{"pareto", func(r *rand.Rand) float64 { return math.Pow(1-r.Float64(), -1/1.5) }},
		{"negative", func(r *rand.Rand) float64 { return -r.ExpFloat64() * 1e6 }},
		{"with_zeros", func(r *rand.Rand) float64 {
			if r.IntN(4) == 0 {
				return 0
			}
			return r.NormFloat64()
		}},
		{"integers", func(r *rand.Rand) float64 { return float64(r.IntN(10)) }},
	}
	qs := []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			s := New()
			vals := make([]float64, 20000)
			for i := range vals {
				vals[i] = d.gen(r)
				s.Add(vals[i])
			}
			slices.Sort(vals)
			if s.Count() != uint64(len(vals)) {
				t.Fatalf("Count = %d, want %d", s.Count(), len(vals))
			}
			for _, q := range qs {
				checkClose(t, "Quantile("+ftoa(q)+")", s.Quantile(q), exact(vals, q))
			}
		})
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestCDF(t *testing.T) {
	s := New()
	for i := 1; i <= 1000; i++ {
		s.Add(float64(i))
	}
	cases := []struct {
		v         float64
		low, high float64 // bounds: F(v/γ) <= CDF <= F(v·γ)
	}{
		{0.5, 0, 0},
		{1, 0.001, 0.001},
		{100, 0.098, 0.102},
		{500, 0.49, 0.51},
		{1000, 1, 1},
		{5000, 1, 1},
		{-1, 0, 0},
	}
	for _, c := range cases {
		got := s.CDF(c.v)
		if got < c.low || got > c.high {
			t.Errorf("CDF(%g) = %g, want in [%g, %g]", c.v, got, c.low, c.high)
		}
	}
	if !math.IsNaN(New().CDF(1)) || !math.IsNaN(New().Quantile(0.5)) {
		t.Error("empty sketch: CDF and Quantile must be NaN")
	}
}

func TestSpecialValues(t *testing.T) {
	s := New()
	s.Add(math.NaN())
	if s.Count() != 0 {
		t.Fatalf("NaN counted: Count = %d", s.Count())
	}
	s.Add(math.Inf(1))
	s.Add(math.Inf(-1))
	s.Add(1e-12)
	s.Add(-1e-12)
	if s.Count() != 4 {
		t.Fatalf("Count = %d, want 4", s.Count())
	}
	if q := s.Quantile(1); q != math.MaxFloat64 {
		t.Errorf("Quantile(1) with +Inf = %g, want MaxFloat64", q)
	}
	if q := s.Quantile(0); q != -math.MaxFloat64 {
		t.Errorf("Quantile(0) with -Inf = %g, want -MaxFloat64", q)
	}
	if q := s.Quantile(0.5); q != 0 {
		t.Errorf("Quantile(0.5) = %g, want 0 (zero bucket)", q)
	}
	// Ascending keys are ascending values.
	keys := s.Proto().Keys
	for i := 1; i < len(keys); i++ {
		if Value(keys[i]) <= Value(keys[i-1]) {
			t.Errorf("Value(%d) = %g not above Value(%d) = %g", keys[i], Value(keys[i]), keys[i-1], Value(keys[i-1]))
		}
	}
}

func TestMergeEqualsAddAll(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	all, a, b := New(), New(), New()
	for i := 0; i < 5000; i++ {
		v := r.NormFloat64() * 10
		all.Add(v)
		if i%3 == 0 {
			a.Add(v)
		} else {
			b.Add(v)
		}
	}
	a.Merge(b)
	a.Merge(nil)
	if !proto.Equal(a.Proto(), all.Proto()) {
		t.Fatal("merge of the parts differs from adding all values to one sketch")
	}
	c := New()
	c.Merge(all)
	c.Merge(c)
	if c.Count() != 2*all.Count() {
		t.Errorf("self merge: Count = %d, want %d", c.Count(), 2*all.Count())
	}
	if c.Quantile(0.5) != all.Quantile(0.5) {
		t.Errorf("self merge changed the median: %g vs %g", c.Quantile(0.5), all.Quantile(0.5))
	}
}

func TestCollapseBound(t *testing.T) {
	s := New()
	// Magnitudes from 1e-9 to 1e300 need far more than MaxBuckets buckets.
	n := 0
	for e := -9.0; e <= 300; e += 0.005 {
		s.Add(math.Pow(10, e))
		n++
	}
	p := s.Proto()
	if len(p.Keys) > MaxBuckets {
		t.Fatalf("%d buckets, cap is %d", len(p.Keys), MaxBuckets)
	}
	if s.Count() != uint64(n) {
		t.Fatalf("Count = %d, want %d (collapse must not lose counts)", s.Count(), n)
	}
	// The top quantile keeps its accuracy.
	checkClose(t, "Quantile(1)", s.Quantile(1), math.Pow(10, -9+0.005*float64(n-1)))
	// Values below the floor keep going to the floor.
	s.Add(1e-8)
	if got := len(s.Proto().Keys); got > MaxBuckets {
		t.Errorf("%d buckets after adding below the floor", got)
	}
	// A merge of a collapsed sketch keeps the cap.
	m := New()
	for i := 0; i < 100; i++ {
		m.Add(float64(i) * 1e-8)
	}
	m.Merge(s)
	if got := len(m.Proto().Keys); got > MaxBuckets {
		t.Errorf("%d buckets after merge", got)
	}
	if m.Count() != s.Count()+100 {
		t.Errorf("merged Count = %d, want %d", m.Count(), s.Count()+100)
	}
}

func TestProtoRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s := New()
	for i := 0; i < 3000; i++ {
		s.Add(r.NormFloat64())
	}
	p := s.Proto()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var p2 agentv1.Sketch
	if err := proto.Unmarshal(b, &p2); err != nil {
		t.Fatal(err)
	}
	s2, err := FromProto(&p2)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Count() != s.Count() || !proto.Equal(s2.Proto(), p) {
		t.Fatal("round trip changed the sketch")
	}
	for _, q := range []float64{0.1, 0.5, 0.9} {
		if s2.Quantile(q) != s.Quantile(q) {
			t.Errorf("Quantile(%g): %g after round trip, %g before", q, s2.Quantile(q), s.Quantile(q))
		}
	}
	s.Reset()
	if s.Count() != 0 || len(s.Proto().Keys) != 0 {
		t.Error("Reset left values")
	}
	e, err := FromProto(nil)
	if err != nil || e.Count() != 0 {
		t.Errorf("FromProto(nil) = %v, %v; want empty sketch", e, err)
	}
}

func TestFromProtoErrors(t *testing.T) {
	cases := []struct {
		name string
		p    *agentv1.Sketch
		want string
	}{
		{"lengths", &agentv1.Sketch{Keys: []int32{1, 2}, Counts: []uint64{1}}, "2 keys but 1 counts"},
		{"order", &agentv1.Sketch{Keys: []int32{3, 2}, Counts: []uint64{1, 1}}, "keys[1] = 2 after 3"},
		{"duplicate", &agentv1.Sketch{Keys: []int32{2, 2}, Counts: []uint64{1, 1}}, "keys[1] = 2 after 2"},
		{"zero count", &agentv1.Sketch{Keys: []int32{0, 1}, Counts: []uint64{1, 0}}, "counts[1] (key 1) is 0"},
		{"key range", &agentv1.Sketch{Keys: []int32{1 << 30}, Counts: []uint64{1}}, "keys[0] = 1073741824"},
		{"overflow", &agentv1.Sketch{Keys: []int32{1, 2}, Counts: []uint64{math.MaxUint64, 1}}, "counts[1] overflows"},
		{"too many", &agentv1.Sketch{Keys: make([]int32, MaxBuckets+1), Counts: make([]uint64, MaxBuckets+1)}, "2049 buckets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromProto(c.p)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to mention %q", err, c.want)
			}
			if verr := ValidateProto(c.p); verr == nil || verr.Error() != err.Error() {
				t.Errorf("ValidateProto: %v, want %v", verr, err)
			}
			s := New()
			s.Add(3)
			before := s.Proto()
			if merr := s.MergeProto(c.p); merr == nil || merr.Error() != err.Error() {
				t.Errorf("MergeProto: %v, want %v", merr, err)
			}
			if !proto.Equal(s.Proto(), before) || s.Count() != 1 {
				t.Error("a failed MergeProto changed the sketch")
			}
		})
	}
}

// MergeProto of a wire form equals Merge of the sketch it decodes to.
func TestMergeProtoEqualsMerge(t *testing.T) {
	a, b := New(), New()
	for i := range 3000 {
		a.Add(float64(i%97) * 1.3)
		b.Add(float64(i%89)*-0.7 + 1e-3*float64(i))
	}
	viaSketch, viaProto := New(), New()
	viaSketch.Merge(a)
	viaProto.Merge(a)
	viaSketch.Merge(b)
	if err := viaProto.MergeProto(b.Proto()); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(viaSketch.Proto(), viaProto.Proto()) || viaSketch.Count() != viaProto.Count() {
		t.Fatal("MergeProto differs from Merge(FromProto)")
	}
	if err := viaProto.MergeProto(nil); err != nil || viaProto.Count() != viaSketch.Count() {
		t.Fatalf("MergeProto(nil): %v, count %d", err, viaProto.Count())
	}
}

func FuzzFromProto(f *testing.F) {
	s := New()
	for _, v := range []float64{-3, 0, 1e-12, 2, 7.5, 1e9} {
		s.Add(v)
	}
	seed, _ := proto.Marshal(s.Proto())
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p agentv1.Sketch
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		s, err := FromProto(&p)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A valid sketch round-trips and answers without panicking.
		if !proto.Equal(s.Proto(), &p) && len(p.Keys) > 0 {
			t.Fatal("round trip changed an accepted sketch")
		}
		q := s.Quantile(0.5)
		if s.Count() > 0 && math.IsNaN(q) {
			t.Fatal("NaN median of a non-empty sketch")
		}
		s.Merge(s)
		s.Add(1)
	})
}

func BenchmarkAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	vals := make([]float64, 1024)
	for i := range vals {
		vals[i] = r.NormFloat64() * 5
	}
	s := New()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.Add(vals[i&1023])
	}
}
