package telemetry

import (
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// maxWindow bounds the dense bucket window of a sketcher (4 bytes per
// bucket); keys outside it go to a map-based sketch.
const maxWindow = 4096

// sketcher counts a feature's values in the buckets of internal/sketch
// (same keys, so the result is exactly what sketch.Add would give). The hot
// path counts into a dense window of buckets, which costs a logarithm and
// an increment, instead of a map update; keys beyond the window go to an
// overflow sketch. It is converted to a sketch.Sketch when collected.
type sketcher struct {
	lo     int32    // key of counts[0]
	counts []uint32 // dense window
	over   *sketch.Sketch
}

func (k *sketcher) add(x float64) {
	key := sketch.Key(x)
	i := int(key) - int(k.lo)
	if i >= 0 && i < len(k.counts) {
		if k.counts[i] < ^uint32(0) {
			k.counts[i]++
			return
		}
	} else if k.grow(key) {
		k.counts[key-k.lo]++
		return
	}
	if k.over == nil {
		k.over = sketch.New()
	}
	k.over.Add(x)
}

// grow widens the window to hold key; false if it would exceed maxWindow.
func (k *sketcher) grow(key int32) bool {
	if len(k.counts) == 0 {
		k.lo, k.counts = key-8, make([]uint32, 64)
		return true
	}
	lo, hi := min(k.lo, key), max(k.lo+int32(len(k.counts))-1, key)
	n := int(hi-lo) + 1
	if n > maxWindow {
		return false
	}
	// Leave slack in the direction of growth.
	n = min(maxWindow, max(n+16, 2*len(k.counts)))
	if key < k.lo {
		lo = hi - int32(n) + 1
	}
	c := make([]uint32, n)
	copy(c[k.lo-lo:], k.counts)
	k.lo, k.counts = lo, c
	return true
}

// sketch returns what k counted as a sketch (nil if nothing).
func (k *sketcher) sketch() *sketch.Sketch {
	var keys []int32
	var counts []uint64
	for i, c := range k.counts {
		if c > 0 {
			keys = append(keys, k.lo+int32(i))
			counts = append(counts, uint64(c))
		}
	}
	if len(keys) == 0 && k.over == nil {
		return nil
	}
	s := sketch.New()
	for len(keys) > 0 { // FromProto takes at most MaxBuckets at a time
		n := min(len(keys), sketch.MaxBuckets)
		part, err := sketch.FromProto(&agentv1.Sketch{Keys: keys[:n], Counts: counts[:n]})
		if err == nil { // keys come from sketch.Key: always valid
			s.Merge(part)
		}
		keys, counts = keys[n:], counts[n:]
	}
	s.Merge(k.over)
	return s
}
