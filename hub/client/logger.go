package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// BatchOptions configures a RunLogger. Zero fields take the defaults.
type BatchOptions struct {
	// MaxPoints triggers a flush once this many metric points are
	// buffered. Default 1000.
	MaxPoints int
	// Interval is the period of background flushes. Default 1s.
	Interval time.Duration
	// FlushTimeout bounds each background flush. Default 30s.
	FlushTimeout time.Duration
	// MaxBuffered bounds the points held in memory (while the hub is
	// unreachable or slower than the program records); the oldest are
	// dropped beyond it and the next Flush or Close reports how many.
	// Default 100 × MaxPoints.
	MaxBuffered int
	// OnError, if set, is called (from the background goroutine) with the
	// error of each failed background flush.
	OnError func(error)
}

func (o BatchOptions) withDefaults() BatchOptions {
	if o.MaxPoints <= 0 {
		o.MaxPoints = 1000
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 30 * time.Second
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 100 * o.MaxPoints
	}
	return o
}

// RunLogger batches the params, tags and metrics a training program records
// for one run and sends them in the background: every Interval, and as
// soon as MaxPoints metric points are buffered. Recording never blocks on
// the network.
//
// It is safe for concurrent use. Failures the hub may recover from (it is
// unreachable, or answers 5xx) keep the data buffered for the next flush;
// data the hub refuses (4xx, e.g. an invalid metric name or a changed
// param) is dropped. Either way the error is returned by the next Flush or
// Close (and passed to BatchOptions.OnError for background flushes).
//
// Close must be called: it stops the background goroutine and flushes what
// is left.
type RunLogger struct {
	c       *Client
	ws, run string
	opts    BatchOptions

	mu      sync.Mutex // guards the fields below
	points  []hub.MetricPoint
	params  map[string]string
	tags    map[string]string
	pending error // background errors not yet returned
	dropped int   // points dropped because the buffer was full
	closed  bool

	sendMu sync.Mutex // serializes sends so batches arrive in order
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

// NewRunLogger returns a RunLogger for run runID of workspace ws and
// starts its background goroutine.
func (c *Client) NewRunLogger(ws, runID string, opts BatchOptions) *RunLogger {
	l := &RunLogger{
		c: c, ws: ws, run: runID, opts: opts.withDefaults(),
		params: map[string]string{}, tags: map[string]string{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go l.loop()
	return l
}

// Metric records one point of a metric series, stamped with the current
// time. After Close it is ignored.
func (l *RunLogger) Metric(name string, value float64, step int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if len(l.points) >= l.opts.MaxBuffered {
		l.points = l.points[1:] // drop the oldest rather than block
		l.dropped++
	}
	l.points = append(l.points, hub.MetricPoint{Name: name, Value: value, Step: step, Time: time.Now().UTC()})
	if len(l.points) >= l.opts.MaxPoints {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Param records a param (write-once on the hub). After Close it is
// ignored.
func (l *RunLogger) Param(key, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.params[key] = value
	}
}

// Tag records a tag. After Close it is ignored.
func (l *RunLogger) Tag(key, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.tags[key] = value
	}
}

func (l *RunLogger) loop() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.FlushTimeout)
		err := l.send(ctx)
		cancel()
		if err != nil {
			l.mu.Lock()
			l.pending = errors.Join(l.pending, err)
			l.mu.Unlock()
			if l.opts.OnError != nil {
				l.opts.OnError(err)
			}
		}
	}
}

// Flush sends everything buffered now. It returns the error of this send
// joined with those of earlier background sends not yet reported.
func (l *RunLogger) Flush(ctx context.Context) error {
	err := l.send(ctx)
	l.mu.Lock()
	err = errors.Join(l.pending, err)
	l.pending = nil
	l.mu.Unlock()
	return err
}

// Close stops the background goroutine and flushes what is buffered. The
// second and later calls return ErrClosed.
func (l *RunLogger) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	return l.Flush(ctx)
}

// retryable reports whether data whose send failed with err should be kept
// for the next flush.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests
	}
	return true // transport errors: the hub may come back
}

// send takes what is buffered and sends it: params, then tags, then
// metrics in batches of MaxPoints.
func (l *RunLogger) send(ctx context.Context) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()

	l.mu.Lock()
	params, tags, points := l.params, l.tags, l.points
	l.params, l.tags, l.points = map[string]string{}, map[string]string{}, nil
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()

	var errs []error
	if dropped > 0 {
		errs = append(errs, fmt.Errorf("metric buffer of %d points was full: dropped the %d oldest", l.opts.MaxBuffered, dropped))
	}
	if len(params) > 0 {
		if err := l.c.SetParams(ctx, l.ws, l.run, params); err != nil {
			errs = append(errs, err)
			if retryable(err) {
				l.requeueMap(&l.params, params)
			}
		}
	}
	if len(tags) > 0 {
		if err := l.c.SetTags(ctx, l.ws, l.run, tags); err != nil {
			errs = append(errs, err)
			if retryable(err) {
				l.requeueMap(&l.tags, tags)
			}
		}
	}
	for len(points) > 0 {
		n := min(len(points), l.opts.MaxPoints)
		if err := l.c.LogMetrics(ctx, l.ws, l.run, points[:n]); err != nil {
			errs = append(errs, err)
			if retryable(err) {
				if n := l.requeuePoints(points); n > 0 {
					errs = append(errs, fmt.Errorf("metric buffer of %d points was full: dropped the %d oldest", l.opts.MaxBuffered, n))
				}
				break
			}
		}
		points = points[n:]
	}
	return errors.Join(errs...)
}

// requeueMap puts entries that failed to send back into *dst, under the
// newer values recorded since.
func (l *RunLogger) requeueMap(dst *map[string]string, old map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := maps.Clone(old)
	maps.Copy(m, *dst)
	*dst = m
}

// requeuePoints puts points that failed to send in front of those recorded
// since, keeping at most MaxBuffered; it returns how many were dropped.
func (l *RunLogger) requeuePoints(pts []hub.MetricPoint) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := append(append([]hub.MetricPoint(nil), pts...), l.points...)
	dropped := 0
	if len(all) > l.opts.MaxBuffered {
		dropped = len(all) - l.opts.MaxBuffered
		all = all[dropped:]
	}
	l.points = all
	return dropped
}
