package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/chunkwire"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

type refKey struct {
	sha       string
	chunkSize uint32
}

// refEntry is a blob's size and chunk digests for one chunk size.
type refEntry struct {
	size   uint64
	chunks []string
}

// refCache keeps refEntries forever: 65 bytes per chunk (about 260 bytes
// per MiB of model at 256 KiB chunks).
type refCache struct {
	mu sync.Mutex
	m  map[refKey]*refEntry
	// inflight lets concurrent ModelRef calls for one blob share one read.
	inflight map[refKey]*refCall
}

type refCall struct {
	done chan struct{}
	e    *refEntry
	err  error
}

// ModelRef returns the ModelRef of blob sha (name and version as given),
// with Config.ChunkSize and every chunk's sha256. The blob is read once per
// chunk size; later calls are served from memory, and concurrent calls
// share one read. It fails with the blob store's error (hub.ErrNotFound,
// hub.ErrInvalid) or ErrCorruptBlob when the content's digest is not sha.
func (f *Fleet) ModelRef(ctx context.Context, name string, version uint32, sha string) (*agentv1.ModelRef, error) {
	e, err := f.refEntry(ctx, sha, f.cfg.ChunkSize)
	if err != nil {
		return nil, fmt.Errorf("model ref %s: %w", sha, err)
	}
	return &agentv1.ModelRef{Name: name, Version: version, Sha256: sha, Size: e.size,
		ChunkSize: f.cfg.ChunkSize, ChunkSha256: append([]string(nil), e.chunks...)}, nil
}

func (f *Fleet) refEntry(ctx context.Context, sha string, cs uint32) (*refEntry, error) {
	k := refKey{sha, cs}
	c := &f.refs
	c.mu.Lock()
	if e := c.m[k]; e != nil {
		c.mu.Unlock()
		return e, nil
	}
	if c.inflight == nil {
		c.inflight = map[refKey]*refCall{}
	}
	if call := c.inflight[k]; call != nil {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.e, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &refCall{done: make(chan struct{})}
	c.inflight[k] = call
	c.mu.Unlock()

	call.e, call.err = f.hashChunks(ctx, sha, cs)
	c.mu.Lock()
	delete(c.inflight, k)
	if call.err == nil {
		c.m[k] = call.e
	}
	c.mu.Unlock()
	close(call.done)
	return call.e, call.err
}

// hashChunks reads blob sha once, hashing each chunk and the whole.
func (f *Fleet) hashChunks(ctx context.Context, sha string, cs uint32) (*refEntry, error) {
	r, _, err := f.blobs.Open(ctx, sha)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	whole := sha256.New()
	buf := make([]byte, cs)
	e := &refEntry{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sum := sha256.Sum256(buf[:n])
			e.chunks = append(e.chunks, hex.EncodeToString(sum[:]))
			whole.Write(buf[:n])
			e.size += uint64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != sha {
		return nil, fmt.Errorf("%w: content hashes to %s", ErrCorruptBlob, got)
	}
	return e, nil
}

// serveChunks answers one ChunkRequest of agent: up to
// MaxChunksPerRequest chunks from req.index, each its own ChunkResponse,
// or one ChunkResponse with error when the digest is not in the agent's
// desired state, the index is out of range or the blob cannot be read.
//
// Chunks are published with QoS 0 and errors with QoS 1. At QoS 1 the
// embedded broker stores every chunk in JetStream for each subscriber and
// tracks its acknowledgement, which in a rollout to 200 agents cost more
// than the transfer itself; a chunk lost at QoS 0 (the agent disconnected,
// or the broker cut a slow consumer) is requested again by the agent,
// whose request window bounds what is in flight. Each message is encoded
// by chunkwire into a pooled buffer the chunk is read into directly.
func (f *Fleet) serveChunks(ctx context.Context, agent string, req *agentv1.ChunkRequest) {
	respond := func(resp *agentv1.ChunkResponse) mqtt.Token {
		resp.CorrelationId, resp.Sha256 = req.GetCorrelationId(), req.GetSha256()
		b, err := proto.Marshal(resp)
		if err != nil { // cannot happen for these messages
			f.log.Error("fleet: encode chunk response", "error", err)
			return nil
		}
		return f.client.Publish(topics.Topic(agent, topics.ChunksResponse), 1, false, b)
	}
	fail := func(index uint32, msg string) {
		f.log.Warn("fleet: chunk request refused", "agent", agent, "sha256", req.GetSha256(), "index", index, "reason", msg)
		f.wait(respond(&agentv1.ChunkResponse{Index: index, Error: msg}))
	}
	cs, ok := f.entitled(agent, req.GetSha256())
	if !ok {
		fail(req.GetIndex(), fmt.Sprintf("model %s is not in the desired state of agent %s", req.GetSha256(), agent))
		return
	}
	e, err := f.refEntry(ctx, req.GetSha256(), cs)
	if err != nil {
		fail(req.GetIndex(), fmt.Sprintf("model %s cannot be read: %v", req.GetSha256(), err))
		return
	}
	n := uint32(len(e.chunks))
	if req.GetIndex() >= n {
		fail(req.GetIndex(), fmt.Sprintf("chunk index %d out of range: model %s has %d chunks", req.GetIndex(), req.GetSha256(), n))
		return
	}
	count := min(max(req.GetCount(), 1), f.cfg.MaxChunksPerRequest, n-req.GetIndex())
	r, _, err := f.blobs.Open(ctx, req.GetSha256())
	if err != nil {
		fail(req.GetIndex(), fmt.Sprintf("model %s cannot be read: %v", req.GetSha256(), err))
		return
	}
	defer r.Close()
	topic := topics.Topic(agent, topics.ChunksResponse)
	type sent struct {
		tok mqtt.Token
		buf *[]byte
	}
	var pending []sent
	for i := req.GetIndex(); i < req.GetIndex()+count; i++ {
		off := int64(i) * int64(cs)
		size := int(min(int64(cs), int64(e.size)-off))
		buf := f.chunkBuf(chunkwire.Size(req.GetCorrelationId(), req.GetSha256(), i, size))
		msg, at := chunkwire.AppendData((*buf)[:0], req.GetCorrelationId(), req.GetSha256(), i, size)
		*buf = msg
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			f.bufs.Put(buf)
			fail(i, fmt.Sprintf("chunk %d of model %s cannot be read: %v", i, req.GetSha256(), err))
			break
		}
		if _, err := io.ReadFull(r, msg[at:at+size]); err != nil {
			f.bufs.Put(buf)
			fail(i, fmt.Sprintf("chunk %d of model %s cannot be read: %v", i, req.GetSha256(), err))
			break
		}
		pending = append(pending, sent{f.client.Publish(topic, 0, false, msg), buf})
	}
	for _, p := range pending {
		if f.wait(p.tok) {
			// paho is done with the payload (written, or failed to be):
			// the buffer can carry the next chunk.
			f.bufs.Put(p.buf)
		}
	}
}

// chunkBuf returns a pooled buffer with capacity for n bytes.
func (f *Fleet) chunkBuf(n int) *[]byte {
	if b, ok := f.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	b := make([]byte, 0, n)
	return &b
}

// wait waits for a publication to be done (bounded by Config.Timeout) and
// logs a failure; the agent re-requests what it misses. It reports whether
// the token completed (sent or failed) within the timeout.
func (f *Fleet) wait(tok mqtt.Token) bool {
	if tok == nil {
		return true
	}
	if !tok.WaitTimeout(f.cfg.Timeout) {
		f.log.Warn("fleet: chunk response not sent in time", "timeout", f.cfg.Timeout)
		return false
	}
	if err := tok.Error(); err != nil {
		f.log.Warn("fleet: chunk response not sent", "error", err)
	}
	return true
}
