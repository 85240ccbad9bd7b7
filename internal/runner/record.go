package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// requestTimeout bounds each call to the hub.
const requestTimeout = 30 * time.Second

// maxLogBatchBytes caps the text of one log batch, well under the hub's
// request body limit even with JSON escaping.
const maxLogBatchBytes = 4 << 20

// maxLogBatchLines caps the lines of one log batch (the hub accepts up to
// 10,000 by default).
const maxLogBatchLines = 5000

// maxMetricBatch caps the points of one metrics batch (the hub accepts up
// to 100,000 by default).
const maxMetricBatch = 10_000

// logBatchLen returns how many of the first lines make one batch: at most
// maxLines lines and maxLogBatchBytes of text, and at least one line.
func logBatchLen(lines []hub.LogLine, maxLines int) int {
	n, size := 0, 0
	for n < len(lines) && n < maxLines {
		size += len(lines[n].Text)
		if n > 0 && size > maxLogBatchBytes {
			break
		}
		n++
	}
	return n
}

// permanent reports whether err is the hub refusing a request (retrying
// cannot help) rather than the hub being unreachable.
func permanent(err error) bool {
	return errors.Is(err, hub.ErrInvalid) || errors.Is(err, hub.ErrNotFound) ||
		errors.Is(err, hub.ErrConflict) || errors.Is(err, hub.ErrTooLarge)
}

// recorder buffers what a running command produces and ships it to the hub
// in batches from one goroutine (run), so batches keep their order. While
// the hub is unreachable it retries with exponential backoff and keeps
// buffering, up to MaxBuffered lines and points (then drops the oldest).
// The add methods are safe for concurrent use.
type recorder struct {
	h      Hub
	ws, id string
	opts   *Options
	log    *slog.Logger
	warn   func(format string, args ...any)

	kick chan struct{}

	mu            sync.Mutex
	logs          []hub.LogLine
	points        []hub.MetricPoint
	params        [][2]string // in order; sent one by one (write-once conflicts are per key)
	tags          map[string]string
	droppedLogs   int
	droppedPoints int
	refused       []string // what the hub refused, for the final report
	lastErr       error    // last transient error, nil once a send succeeds
	outage        bool
	sentLogs      int
	sentPoints    int
}

func newRecorder(h Hub, ws, id string, opts *Options, log *slog.Logger, warn func(string, ...any)) *recorder {
	return &recorder{h: h, ws: ws, id: id, opts: opts, log: log, warn: warn, kick: make(chan struct{}, 1), tags: map[string]string{}}
}

func (r *recorder) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *recorder) addLine(l hub.LogLine) {
	r.mu.Lock()
	if len(r.logs) >= r.opts.MaxBuffered {
		r.logs = r.logs[1:]
		r.droppedLogs++
	}
	r.logs = append(r.logs, l)
	full := len(r.logs) >= r.opts.LogFlushLines
	r.mu.Unlock()
	if full {
		r.wake()
	}
}

func (r *recorder) addPoint(p hub.MetricPoint) {
	r.mu.Lock()
	if len(r.points) >= r.opts.MaxBuffered {
		r.points = r.points[1:]
		r.droppedPoints++
	}
	r.points = append(r.points, p)
	full := len(r.points) >= r.opts.MetricFlushPoints
	r.mu.Unlock()
	if full {
		r.wake()
	}
}

func (r *recorder) addParam(k, v string) {
	r.mu.Lock()
	r.params = append(r.params, [2]string{k, v})
	r.mu.Unlock()
	r.wake()
}

func (r *recorder) addTag(k, v string) {
	r.mu.Lock()
	r.tags[k] = v
	r.mu.Unlock()
	r.wake()
}

// run ships batches until stop is closed. Then the caller calls drain.
func (r *recorder) run(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(min(r.opts.LogFlushInterval, r.opts.MetricFlushInterval))
	defer tick.Stop()
	var lastLogs, lastPoints time.Time
	var backoff time.Duration
	var retryAt time.Time
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		case <-r.kick:
		}
		now := time.Now()
		if now.Before(retryAt) {
			continue
		}
		r.mu.Lock()
		nl, np := len(r.logs), len(r.points)
		other := len(r.params) > 0 || len(r.tags) > 0
		r.mu.Unlock()
		logsDue := nl >= r.opts.LogFlushLines || (nl > 0 && now.Sub(lastLogs) >= r.opts.LogFlushInterval)
		pointsDue := np >= r.opts.MetricFlushPoints || (np > 0 && now.Sub(lastPoints) >= r.opts.MetricFlushInterval)
		if !logsDue && !pointsDue && !other {
			continue
		}
		var err error
		if logsDue {
			err = r.sendLogs(ctx)
			lastLogs = now
		}
		if err == nil && pointsDue {
			err = r.sendPoints(ctx)
			lastPoints = now
		}
		if err == nil && other {
			err = r.sendOther(ctx)
		}
		if err != nil {
			backoff = min(max(2*backoff, 200*time.Millisecond), r.opts.MaxBackoff)
			retryAt = time.Now().Add(backoff)
		} else {
			backoff, retryAt = 0, time.Time{}
		}
	}
}

// drain sends everything still buffered, retrying with backoff until the
// buffers are empty or the deadline passes, and returns what could not be
// recorded (nil when everything was).
func (r *recorder) drain(ctx context.Context, deadline time.Time) error {
	backoff := 200 * time.Millisecond
	for {
		err := r.sendLogs(ctx)
		if err == nil {
			err = r.sendPoints(ctx)
		}
		if err == nil {
			err = r.sendOther(ctx)
		}
		r.mu.Lock()
		empty := len(r.logs) == 0 && len(r.points) == 0 && len(r.params) == 0 && len(r.tags) == 0
		r.mu.Unlock()
		if (err == nil && empty) || time.Now().Add(backoff).After(deadline) {
			break
		}
		if err != nil {
			time.Sleep(backoff)
			backoff = min(2*backoff, r.opts.MaxBackoff)
		}
	}
	return r.report()
}

// report summarizes what was lost; nil when nothing was.
func (r *recorder) report() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var problems []string
	if n := len(r.logs) + r.droppedLogs; n > 0 {
		problems = append(problems, fmt.Sprintf("%d log lines not recorded", n))
	}
	if n := len(r.points) + r.droppedPoints; n > 0 {
		problems = append(problems, fmt.Sprintf("%d metric points not recorded", n))
	}
	if n := len(r.params); n > 0 {
		problems = append(problems, fmt.Sprintf("%d params not recorded", n))
	}
	if n := len(r.tags); n > 0 {
		problems = append(problems, fmt.Sprintf("%d tags not recorded", n))
	}
	if len(problems) > 0 && r.lastErr != nil {
		problems[len(problems)-1] += fmt.Sprintf(" (hub unreachable: %v)", r.lastErr)
	}
	problems = append(problems, r.refused...)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRecording, joinProblems(problems))
}

func joinProblems(p []string) string {
	s := ""
	for i, x := range p {
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}

// call runs one hub request with a timeout and classifies its error.
// It returns nil on success and on a refusal (recorded in r.refused and
// dropped); a transient error is returned so the caller backs off.
func (r *recorder) call(ctx context.Context, what string, n int, fn func(context.Context) error) (drop bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	err = fn(cctx)
	cancel()
	// Warnings go out after the lock is released: the terminal may be slow.
	var msg string
	r.mu.Lock()
	switch {
	case err == nil:
		if r.outage {
			r.outage = false
			msg = "hub reachable again; buffered records sent"
		}
		r.lastErr = nil
		drop = true
	case permanent(err):
		r.refused = append(r.refused, fmt.Sprintf("hub refused %s: %v", what, err))
		msg = fmt.Sprintf("hub refused %s: %v", what, err)
		drop, err = true, nil
	default:
		if !r.outage {
			r.outage = true
			msg = fmt.Sprintf("hub unreachable (%v); the command keeps running, records are buffered and retried", err)
		}
		r.lastErr = err
	}
	r.mu.Unlock()
	if msg != "" {
		r.warn("%s", msg)
	}
	if !drop {
		r.log.Debug("send to hub failed", "what", what, "count", n, "err", err)
	}
	return drop, err
}

func (r *recorder) sendLogs(ctx context.Context) error {
	for {
		r.mu.Lock()
		// A backlog (a chatty command, or a hub that was away) goes out in
		// bigger requests than the flush threshold.
		batch := r.logs[:logBatchLen(r.logs, max(r.opts.LogFlushLines, maxLogBatchLines))]
		dropped := r.droppedLogs
		r.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		drop, err := r.call(ctx, fmt.Sprintf("%d log lines", len(batch)), len(batch), func(ctx context.Context) error {
			return r.h.AppendLogs(ctx, r.ws, r.id, batch)
		})
		if !drop {
			return err
		}
		r.mu.Lock()
		// Lines dropped by overflow meanwhile came off the front.
		k := max(0, len(batch)-(r.droppedLogs-dropped))
		r.logs = r.logs[min(k, len(r.logs)):]
		r.sentLogs += len(batch)
		r.mu.Unlock()
	}
}

func (r *recorder) sendPoints(ctx context.Context) error {
	for {
		r.mu.Lock()
		batch := r.points[:min(len(r.points), max(r.opts.MetricFlushPoints, maxMetricBatch))]
		dropped := r.droppedPoints
		r.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		drop, err := r.call(ctx, fmt.Sprintf("%d metric points", len(batch)), len(batch), func(ctx context.Context) error {
			return r.h.LogMetrics(ctx, r.ws, r.id, batch)
		})
		if !drop {
			return err
		}
		r.mu.Lock()
		// Points dropped by overflow meanwhile came off the front.
		k := max(0, len(batch)-(r.droppedPoints-dropped))
		r.points = r.points[min(k, len(r.points)):]
		r.sentPoints += len(batch)
		r.mu.Unlock()
	}
}

func (r *recorder) sendOther(ctx context.Context) error {
	for {
		r.mu.Lock()
		var kv [2]string
		hasParam := len(r.params) > 0
		if hasParam {
			kv = r.params[0]
		}
		r.mu.Unlock()
		if !hasParam {
			break
		}
		drop, err := r.call(ctx, fmt.Sprintf("param %q", kv[0]), 1, func(ctx context.Context) error {
			return r.h.SetParams(ctx, r.ws, r.id, map[string]string{kv[0]: kv[1]})
		})
		if !drop {
			return err
		}
		r.mu.Lock()
		r.params = r.params[1:]
		r.mu.Unlock()
	}
	r.mu.Lock()
	tags := r.tags
	r.tags = map[string]string{}
	r.mu.Unlock()
	if len(tags) == 0 {
		return nil
	}
	drop, err := r.call(ctx, fmt.Sprintf("%d tags", len(tags)), len(tags), func(ctx context.Context) error {
		return r.h.SetTags(ctx, r.ws, r.id, tags)
	})
	if !drop {
		// Put them back under any newer values.
		r.mu.Lock()
		for k, v := range tags {
			if _, newer := r.tags[k]; !newer {
				r.tags[k] = v
			}
		}
		r.mu.Unlock()
	}
	return err
}
