package scoring

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig configures the HTTP server. Zero fields take the defaults
// named on each field.
type ServerConfig struct {
	// Keys are the accepted API keys (primary, secondary, ...), sent as
	// "Authorization: Bearer KEY". Empty means no authentication. The
	// health endpoints are always open.
	Keys []string
	// MaxBodyBytes limits request bodies (default 32 MiB); larger ones get 413.
	MaxBodyBytes int64
	// MaxHeaderBytes limits request headers (default 16 KiB); larger get 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout (default 5s), ReadTimeout (default 30s),
	// WriteTimeout (default 60s) and IdleTimeout (default 120s) are the
	// net/http server timeouts.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxConcurrent bounds the requests being handled at once (default
	// 256); beyond it requests get 503 with Retry-After.
	MaxConcurrent int
	// RequestTimeout is the deadline of one inference, queue included
	// (default 30s); past it the request gets 504.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown of Serve (default 10s).
	ShutdownTimeout time.Duration
	// Version is reported by GET /v2.
	Version string
}

func (c ServerConfig) withDefaults() ServerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 30*time.Second)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 256
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// Server is the HTTP scoring endpoint over a Registry: the Open Inference
// Protocol v2 REST API, the Azure-ML-style /score and /swagger.json, and
// Prometheus /metrics. It is safe for concurrent use; it does not own the
// registry (the caller closes it after Serve returns).
type Server struct {
	cfg     ServerConfig
	reg     *Registry
	log     *slog.Logger
	keys    [][sha256.Size]byte
	sem     chan struct{}
	mux     *http.ServeMux
	stopped atomic.Bool

	unknownModel atomic.Uint64
	unauthorized atomic.Uint64
	overloaded   atomic.Uint64
}

// NewServer returns a server for reg.
func NewServer(cfg ServerConfig, reg *Registry, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, reg: reg, log: log, sem: make(chan struct{}, cfg.MaxConcurrent)}
	for i, k := range cfg.Keys {
		if k == "" {
			return nil, fmt.Errorf("server config: key %d: %w: empty", i, ErrInvalidInput)
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", s.live)
	mux.HandleFunc("GET /v2/health/ready", s.ready)
	guarded := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.guard(h)) }
	guarded("GET /v2", s.serverMetadata)
	guarded("GET /v2/models/{model}", s.modelMetadata)
	guarded("GET /v2/models/{model}/versions/{version}", s.modelMetadata)
	guarded("GET /v2/models/{model}/ready", s.modelReady)
	guarded("GET /v2/models/{model}/versions/{version}/ready", s.modelReady)
	guarded("POST /v2/models/{model}/infer", s.infer)
	guarded("POST /v2/models/{model}/versions/{version}/infer", s.infer)
	guarded("POST /score", s.score)
	guarded("POST /score/{model}", s.score)
	guarded("GET /swagger.json", s.swagger)
	guarded("GET /metrics", s.metrics)
	mux.HandleFunc("/", s.noRoute)
	s.mux = mux
	return s, nil
}

// noRoute answers 405 (with Allow) when the path exists for another
// method, else 404, both as JSON errors.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed for %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
}

// Handler returns the server's routes, for tests and for mounting.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves HTTP on ln until ctx ends, then stops accepting, reports
// not ready, and waits up to ShutdownTimeout for requests in flight. It
// closes ln. It returns nil after a graceful shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.stopped.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// guard applies the API key check and the concurrency limit.
func (s *Server) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.keys) > 0 && !s.authorized(r) {
			s.unauthorized.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="atelier-scoring"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API key: send Authorization: Bearer KEY")
			return
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.overloaded.Add(1)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%d requests in progress, the server's limit", cap(s.sem)))
			return
		}
		defer func() { <-s.sem }()
		h(w, r)
	})
}

// authorized compares the bearer token with every key in constant time
// (hashes of equal length, all keys checked).
func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(auth[len(prefix):]))
	ok := 0
	for _, k := range s.keys {
		ok |= subtle.ConstantTimeCompare(got[:], k[:])
	}
	return ok == 1
}

func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	writeJSONBytes(w, http.StatusOK, []byte(`{"live":true}`))
}

// ready: serving and at least one model loaded.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.stopped.Load() || len(s.reg.Models()) == 0 {
		writeJSONBytes(w, http.StatusServiceUnavailable, []byte(`{"ready":false}`))
		return
	}
	writeJSONBytes(w, http.StatusOK, []byte(`{"ready":true}`))
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads the body into a pooled buffer, enforcing MaxBodyBytes.
// The caller returns the buffer with putBuf.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*[]byte, error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, errTooLarge(s.cfg.MaxBodyBytes)
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if r.ContentLength > 0 && int64(cap(b)) < r.ContentLength {
		b = make([]byte, 0, r.ContentLength)
	}
	lr := io.LimitedReader{R: r.Body, N: s.cfg.MaxBodyBytes + 1}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			putBuf(bp)
			return nil, fmt.Errorf("%w: reading body: %v", ErrInvalidInput, err)
		}
	}
	*bp = b
	if int64(len(b)) > s.cfg.MaxBodyBytes {
		putBuf(bp)
		return nil, errTooLarge(s.cfg.MaxBodyBytes)
	}
	return bp, nil
}

func putBuf(bp *[]byte) {
	if cap(*bp) > 1<<20 {
		return // do not pin large buffers
	}
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}

type tooLargeError struct{ limit int64 }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("request body larger than the limit of %d bytes", e.limit)
}

func errTooLarge(limit int64) error { return tooLargeError{limit} }

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var tl tooLargeError
	switch {
	case errors.As(err, &tl):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrUnsupported):
		return http.StatusBadRequest
	case errors.Is(err, ErrModelNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrQueueFull):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	code := statusOf(err)
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code == http.StatusInternalServerError {
		s.log.Error("scoring request failed", "err", err)
	}
	writeError(w, code, err.Error())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSONBytes(w, code, appendError(nil, msg))
}

func writeJSONBytes(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(code)
	w.Write(b) //nolint:errcheck // the client is gone; nothing to do
}

// acquire resolves the model and version of a request, counting unknown
// models.
func (s *Server) acquire(r *http.Request, name string) (*Version, error) {
	v, err := s.reg.Acquire(name, r.PathValue("version"))
	if err != nil {
		s.unknownModel.Add(1)
	}
	return v, err
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	v, err := s.acquire(r, r.PathValue("model"))
	if err != nil {
		s.fail(w, err)
		return
	}
	defer v.Release()
	bp, err := s.readBody(w, r)
	if err != nil {
		v.metrics.requests[outcomeInvalid].Add(1)
		s.fail(w, err)
		return
	}
	req, err := DecodeInferRequest(*bp)
	putBuf(bp)
	if err == nil {
		err = checkRequested(v.sig, req.Outputs)
	}
	if err != nil {
		v.metrics.requests[outcomeInvalid].Add(1)
		s.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	outs, err := v.Infer(ctx, req.Inputs)
	cancel()
	if err != nil {
		s.fail(w, err)
		return
	}
	if len(req.Outputs) > 0 {
		sel := make([]Tensor, len(req.Outputs))
		for i, name := range req.Outputs {
			sel[i] = outs[v.sig.OutputIndex(name)]
		}
		outs = sel
	}
	out := bufPool.Get().(*[]byte)
	*out = AppendInferResponse((*out)[:0], v.Model, v.Version, req.ID, outs)
	writeJSONBytes(w, http.StatusOK, *out)
	putBuf(out)
}

func checkRequested(sig Signature, names []string) error {
	for _, n := range names {
		if sig.OutputIndex(n) < 0 {
			outs := make([]string, len(sig.Outputs))
			for i, o := range sig.Outputs {
				outs[i] = fmt.Sprintf("%q", o.Name)
			}
			return fmt.Errorf("requested output %q: %w: unknown output; the model's outputs are [%s]", n, ErrInvalidInput, strings.Join(outs, ", "))
		}
	}
	return nil
}
