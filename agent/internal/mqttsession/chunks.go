package mqttsession

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

type chunkKey struct {
	sha   string
	index uint32
}

type chunkResult struct {
	data []byte
	err  error
}

// chunkState tracks chunk requests in flight and chunks received ahead of
// their turn. The buffer holds at most one window of chunks.
type chunkState struct {
	mu       sync.Mutex
	seq      uint64
	nonce    string
	corr     map[string]bool // correlation ids of live requests
	inflight map[chunkKey]bool
	ready    map[chunkKey]chunkResult
	total    map[string]uint32 // chunk count per digest, from ExpectChunks
	reqEnd   map[string]uint32 // first index never requested, per digest
	changed  chan struct{}     // closed and replaced on every arrival/reset
}

func (c *chunkState) init() {
	c.nonce = strconv.FormatInt(time.Now().UnixNano(), 36)
	c.corr = map[string]bool{}
	c.inflight = map[chunkKey]bool{}
	c.ready = map[chunkKey]chunkResult{}
	c.total = map[string]uint32{}
	c.reqEnd = map[string]uint32{}
	c.changed = make(chan struct{})
}

func (c *chunkState) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// reset forgets every request in flight (after a reconnect their answers
// may be lost); waiting Chunk calls wake up and request again. Chunks
// already received are kept.
func (c *chunkState) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.inflight)
	clear(c.corr)
	clear(c.reqEnd)
	c.signalLocked()
}

// deliver stores a response if it answers a live request for a chunk still
// wanted; anything else (late duplicates, stale sessions) is dropped.
func (c *chunkState) deliver(r *agentv1.ChunkResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := chunkKey{r.GetSha256(), r.GetIndex()}
	if !c.corr[r.GetCorrelationId()] || !c.inflight[k] {
		return
	}
	delete(c.inflight, k)
	if r.GetError() != "" {
		c.ready[k] = chunkResult{err: fmt.Errorf("%w: %s", ErrChunkRefused, r.GetError())}
	} else {
		c.ready[k] = chunkResult{data: r.GetData()}
	}
	c.signalLocked()
}

// requestLocked marks [from, from+count) in flight (skipping chunks already
// received or in flight) and returns the request to publish, or nil.
func (c *chunkState) requestLocked(sha string, from, count uint32) *agentv1.ChunkRequest {
	if n, ok := c.total[sha]; ok {
		if from >= n {
			return nil
		}
		count = min(count, n-from)
	}
	for count > 0 {
		k := chunkKey{sha, from}
		if _, got := c.ready[k]; !got && !c.inflight[k] {
			break
		}
		from++
		count--
	}
	if count == 0 {
		return nil
	}
	for i := from; i < from+count; i++ {
		c.inflight[chunkKey{sha, i}] = true
	}
	c.reqEnd[sha] = max(c.reqEnd[sha], from+count)
	c.seq++
	id := c.nonce + "-" + strconv.FormatUint(c.seq, 10)
	c.corr[id] = true
	return &agentv1.ChunkRequest{CorrelationId: id, Sha256: sha, Index: from, Count: count}
}

func (c *chunkState) unmarkLocked(r *agentv1.ChunkRequest) {
	for i := r.Index; i < r.Index+r.Count; i++ {
		delete(c.inflight, chunkKey{r.Sha256, i})
	}
	delete(c.corr, r.CorrelationId)
}

// ExpectChunks implements modelcache.ChunkCounter: it records how many
// chunks sha has, so read-ahead stops at the end, and drops any state left
// from an earlier transfer.
func (s *Session) ExpectChunks(sha string, count uint32) {
	c := &s.chunks
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.inflight)
	clear(c.ready)
	clear(c.corr)
	clear(c.reqEnd)
	clear(c.total)
	c.total[sha] = count
}

// Chunk implements modelcache.ChunkSource over MQTT: it publishes
// ChunkRequests on .../chunks/request for a window of chunks starting at
// index and waits for the matching ChunkResponse. While chunks are consumed
// in order it keeps Config.ChunkWindow chunks in flight. While disconnected
// it waits for the session to come back (bounded only by ctx); a chunk that
// does not arrive within ChunkTimeout while connected is requested again, up
// to ChunkRetries times, then ErrChunkTimeout. A hub error answer gives
// ErrChunkRefused. The data is not verified here (the cache does that).
func (s *Session) Chunk(ctx context.Context, sha string, index uint32) ([]byte, error) {
	c := &s.chunks
	w := uint32(s.cfg.ChunkWindow)
	k := chunkKey{sha, index}
	timeouts := 0
	for {
		var reqs []*agentv1.ChunkRequest
		c.mu.Lock()
		if r, ok := c.ready[k]; ok {
			delete(c.ready, k)
			// Keep the window full, in batches of at least half a window.
			if end := c.reqEnd[sha]; end < index+1+w && end >= index+1 && index+1+w-end >= max(w/2, 1) {
				if req := c.requestLocked(sha, end, index+1+w-end); req != nil {
					reqs = append(reqs, req)
				}
			}
			c.mu.Unlock()
			s.sendAll(ctx, reqs)
			return r.data, r.err
		}
		if !c.inflight[k] {
			if req := c.requestLocked(sha, index, w); req != nil {
				reqs = append(reqs, req)
			}
		}
		changed := c.changed
		c.mu.Unlock()

		if !s.sendAll(ctx, reqs) {
			// Not connected (or the connection is failing): wait for the
			// session to come back, then ask again.
			c, up, down := s.current()
			if c != nil {
				// Run has not noticed the loss yet; don't spin meanwhile.
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-down:
				case <-t.C:
				}
				t.Stop()
				continue
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-up:
			case <-changed:
			}
			continue
		}
		t := time.NewTimer(s.cfg.ChunkTimeout)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-changed:
			t.Stop()
		case <-t.C:
			if !s.Connected() {
				continue // the reconnect resets and re-requests
			}
			timeouts++
			c.mu.Lock()
			delete(c.inflight, k)
			c.mu.Unlock()
			if timeouts > s.cfg.ChunkRetries {
				return nil, fmt.Errorf("chunk %d of %s: %w after %d attempts of %v", index, sha, ErrChunkTimeout, timeouts, s.cfg.ChunkTimeout)
			}
			s.log.Warn("chunk request timed out, asking again", "sha256", sha, "index", index, "attempt", timeouts)
		}
	}
}

// sendAll publishes requests; on failure it forgets them so they are sent
// again later. It reports whether all were sent.
func (s *Session) sendAll(ctx context.Context, reqs []*agentv1.ChunkRequest) bool {
	for i, r := range reqs {
		if err := s.publish(ctx, topics.ChunksRequest, r, false); err != nil {
			if !errors.Is(err, ErrNotConnected) {
				s.log.Warn("chunk request not sent", "sha256", r.Sha256, "index", r.Index, "error", err)
			}
			s.chunks.mu.Lock()
			for _, r := range reqs[i:] {
				s.chunks.unmarkLocked(r)
			}
			s.chunks.mu.Unlock()
			return false
		}
	}
	return true
}
