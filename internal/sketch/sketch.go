package sketch

import (
	"fmt"
	"math"
	"slices"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

const (
	// RelativeAccuracy is α: a reported quantile is within α·|x| of the
	// exact value x of the same rank (outside the zero bucket).
	RelativeAccuracy = 0.01
	// MinValue is the smallest magnitude with its own bucket; smaller
	// magnitudes count in the zero bucket.
	MinValue = 1e-9
	// MaxBuckets bounds the number of non-empty buckets of a sketch.
	MaxBuckets = 2048
	// collapseTo is how many buckets a collapse keeps.
	collapseTo = MaxBuckets - MaxBuckets/8
)

var (
	gamma    = (1 + RelativeAccuracy) / (1 - RelativeAccuracy)
	lnGamma  = math.Log(gamma)
	minIndex = int32(math.Ceil(math.Log(MinValue) / lnGamma))
	maxIndex = int32(math.Ceil(math.Log(math.MaxFloat64) / lnGamma))
	// maxKey is the largest wire key magnitude.
	maxKey = maxIndex - minIndex + 1
)

// Sketch counts values in logarithmic buckets. The zero value is not
// usable; call New. Not safe for concurrent use.
type Sketch struct {
	counts map[int32]uint64
	count  uint64
	// floor is set once buckets were collapsed: keys below it are counted
	// in it.
	floor     int32
	collapsed bool
}

// New returns an empty sketch.
func New() *Sketch {
	return &Sketch{counts: make(map[int32]uint64)}
}

// key is the wire key of v's bucket. v must not be NaN.
func key(v float64) int32 {
	a := math.Abs(v)
	if a < MinValue {
		return 0
	}
	var idx int32
	if math.IsInf(a, 0) || a > math.MaxFloat64 {
		idx = maxIndex
	} else {
		idx = int32(math.Ceil(math.Log(a) / lnGamma))
		idx = max(minIndex, min(idx, maxIndex))
	}
	k := idx - minIndex + 1
	if v < 0 {
		return -k
	}
	return k
}

// value is the representative value of the bucket with wire key k.
func value(k int32) float64 {
	if k == 0 {
		return 0
	}
	m := k
	if m < 0 {
		m = -m
	}
	idx := m + minIndex - 1
	v := 2 * math.Pow(gamma, float64(idx)) / (gamma + 1)
	if math.IsInf(v, 0) || v > math.MaxFloat64 {
		v = math.MaxFloat64
	}
	if k < 0 {
		return -v
	}
	return v
}

// Add counts v. NaN is ignored.
func (s *Sketch) Add(v float64) {
	if math.IsNaN(v) {
		return
	}
	s.addKey(key(v), 1)
	s.collapse()
}

func (s *Sketch) addKey(k int32, n uint64) {
	if s.collapsed && k < s.floor {
		k = s.floor
	}
	s.counts[k] += n
	s.count += n
}

// collapse merges the lowest buckets when more than MaxBuckets are used,
// down to collapseTo so that a stream of new keys does not sort on every
// Add.
func (s *Sketch) collapse() {
	if len(s.counts) <= MaxBuckets {
		return
	}
	keys := s.sortedKeys()
	cut := len(keys) - collapseTo
	floor := keys[cut]
	for _, k := range keys[:cut] {
		s.counts[floor] += s.counts[k]
		delete(s.counts, k)
	}
	s.floor, s.collapsed = floor, true
}

func (s *Sketch) sortedKeys() []int32 {
	keys := make([]int32, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Merge adds every value counted by o to s, as if each had been added to
// s. o is not changed; o may be nil.
func (s *Sketch) Merge(o *Sketch) {
	if o == nil {
		return
	}
	if o == s {
		o = s.clone()
	}
	if o.collapsed && (!s.collapsed || o.floor > s.floor) {
		// Keep the coarser floor so the merge equals adding all values.
		s.floor, s.collapsed = o.floor, true
		for k, n := range s.counts {
			if k < s.floor {
				s.counts[s.floor] += n
				delete(s.counts, k)
			}
		}
	}
	for k, n := range o.counts {
		s.addKey(k, n)
	}
	s.collapse()
}

// Count is the number of values counted (NaN excluded).
func (s *Sketch) Count() uint64 { return s.count }

// Quantile returns the value of rank q·(Count-1) (q in [0, 1], clamped),
// within RelativeAccuracy of the exact one (see the package comment for
// the zero bucket and collapsed buckets). An empty sketch returns NaN.
func (s *Sketch) Quantile(q float64) float64 {
	if s.count == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	q = max(0, min(q, 1))
	rank := uint64(q * float64(s.count-1))
	var cum uint64
	keys := s.sortedKeys()
	for _, k := range keys {
		cum += s.counts[k]
		if cum > rank {
			return value(k)
		}
	}
	return value(keys[len(keys)-1])
}

// CDF returns the fraction of counted values in buckets at or below v's
// bucket: the empirical P(X <= v) at bucket granularity. An empty sketch
// returns NaN; NaN v returns NaN.
func (s *Sketch) CDF(v float64) float64 {
	if s.count == 0 || math.IsNaN(v) {
		return math.NaN()
	}
	kv := key(v)
	var below uint64
	for k, n := range s.counts {
		if k <= kv {
			below += n
		}
	}
	return float64(below) / float64(s.count)
}

// Keys returns the wire keys of the non-empty buckets, ascending.
func (s *Sketch) Keys() []int32 { return s.sortedKeys() }

// Value is the value reported for the bucket of key k.
func Value(k int32) float64 { return value(k) }

// Key is the wire key of v's bucket (v not NaN).
func Key(v float64) int32 { return key(v) }

func (s *Sketch) clone() *Sketch {
	c := &Sketch{counts: make(map[int32]uint64, len(s.counts)), count: s.count, floor: s.floor, collapsed: s.collapsed}
	for k, n := range s.counts {
		c.counts[k] = n
	}
	return c
}

// Reset empties s, keeping its memory.
func (s *Sketch) Reset() {
	clear(s.counts)
	s.count = 0
	s.floor, s.collapsed = 0, false
}

// Proto returns the wire form: keys ascending, counts parallel. An empty
// sketch gives empty slices.
func (s *Sketch) Proto() *agentv1.Sketch {
	keys := s.sortedKeys()
	counts := make([]uint64, len(keys))
	for i, k := range keys {
		counts[i] = s.counts[k]
	}
	return &agentv1.Sketch{Keys: keys, Counts: counts}
}

// ValidateProto checks a wire form as FromProto does, without building a
// sketch. nil is valid.
func ValidateProto(p *agentv1.Sketch) error {
	_, err := checkProto(p)
	return err
}

// checkProto validates p and returns its total count.
func checkProto(p *agentv1.Sketch) (uint64, error) {
	if p == nil {
		return 0, nil
	}
	if len(p.Keys) != len(p.Counts) {
		return 0, fmt.Errorf("%w: %d keys but %d counts", ErrInvalid, len(p.Keys), len(p.Counts))
	}
	if len(p.Keys) > MaxBuckets {
		return 0, fmt.Errorf("%w: %d buckets, at most %d expected", ErrInvalid, len(p.Keys), MaxBuckets)
	}
	var total uint64
	for i, k := range p.Keys {
		if k > maxKey || k < -maxKey {
			return 0, fmt.Errorf("%w: keys[%d] = %d, expected |key| <= %d", ErrInvalid, i, k, maxKey)
		}
		if i > 0 && k <= p.Keys[i-1] {
			return 0, fmt.Errorf("%w: keys[%d] = %d after %d, expected strictly ascending keys", ErrInvalid, i, k, p.Keys[i-1])
		}
		n := p.Counts[i]
		if n == 0 {
			return 0, fmt.Errorf("%w: counts[%d] (key %d) is 0, expected > 0", ErrInvalid, i, k)
		}
		if total+n < total {
			return 0, fmt.Errorf("%w: counts[%d] overflows the total count", ErrInvalid, i)
		}
		total += n
	}
	return total, nil
}

// MergeProto adds the values counted by a wire-form sketch to s, as
// Merge(FromProto(p)) would, without building the intermediate sketch. It
// validates p first (errors as FromProto's, and an overflow of s's count)
// and then changes nothing on an error.
func (s *Sketch) MergeProto(p *agentv1.Sketch) error {
	total, err := checkProto(p)
	if err != nil {
		return err
	}
	if s.count+total < s.count {
		return fmt.Errorf("%w: merging %d values overflows the count %d", ErrInvalid, total, s.count)
	}
	if p == nil {
		return nil
	}
	for i, k := range p.Keys {
		s.addKey(k, p.Counts[i])
	}
	s.collapse()
	return nil
}

// FromProto rebuilds a sketch from its wire form. nil is an empty sketch.
// Errors (wrapping ErrInvalid) name the first bad entry: keys and counts
// of different lengths, more than MaxBuckets entries, keys not strictly
// ascending, a key beyond the largest bucket, a zero count, or a total
// that overflows uint64.
func FromProto(p *agentv1.Sketch) (*Sketch, error) {
	s := New()
	if err := s.MergeProto(p); err != nil {
		return nil, err
	}
	return s, nil
}
