package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// Headers of every delivery.
const (
	HeaderSignature = "X-Atelier-Signature" // "sha256=" + hex HMAC-SHA256 of the body
	HeaderEventID   = "X-Atelier-Event-Id"
	HeaderEventKind = "X-Atelier-Event"
)

// Store is what the webhook reads and where it keeps its cursor;
// hub.EventStore satisfies it.
type Store interface {
	ListEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error)
	EventCursor(ctx context.Context, consumer string) (int64, error)
	SetEventCursor(ctx context.Context, consumer string, after int64) error
}

// Config configures a Webhook. Zero values take the defaults shown.
type Config struct {
	// URL receives the POSTs (http or https, with a host). Required.
	URL string
	// Secret, when set, keys the HMAC-SHA256 signature header.
	Secret string
	// Consumer names the cursor in the store (default "webhook").
	Consumer string
	// Poll is how often the log is read for new events when idle
	// (default 1s).
	Poll time.Duration
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of one
	// event: it starts at MinBackoff and doubles up to MaxBackoff (defaults
	// 500ms and 1m).
	MinBackoff, MaxBackoff time.Duration
	// Client sends the requests (default: a client with no overall
	// timeout; Timeout applies per request).
	Client *http.Client
}

// Webhook delivers events to one URL. Create it with New and call Run
// once.
type Webhook struct {
	cfg   Config
	where string // the URL without its query or password, for logs
	st    Store
	log   *slog.Logger
}

// New checks cfg and returns a webhook reading from st.
func New(cfg Config, st Store, log *slog.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrConfig, cfg.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q: expected an http:// or https:// URL with a host", ErrConfig, cfg.URL)
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "webhook"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u.RawQuery, u.Fragment = "", ""
	return &Webhook{cfg: cfg, where: u.Redacted(), st: st, log: log}, nil
}

// Sign returns the signature header value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Run delivers events after the stored cursor until ctx ends, and returns
// ctx's error. Store errors are logged and retried.
func (w *Webhook) Run(ctx context.Context) error {
	after, err := w.cursor(ctx)
	if err != nil {
		return err
	}
	w.log.Info("webhook delivering events", "url", w.where, "after", after, "signed", w.cfg.Secret != "")
	for {
		evs, err := w.st.ListEvents(ctx, hub.EventQuery{After: after, Limit: 100})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.log.Error("webhook: read events", "after", after, "error", err)
			evs = nil
		}
		if len(evs) > 0 && evs[0].ID > after+1 {
			w.log.Warn("webhook: events removed by retention before delivery were skipped", "from", after+1, "to", evs[0].ID-1)
		}
		for _, e := range evs {
			if err := w.deliver(ctx, e); err != nil {
				return err
			}
			after = e.ID
			if err := w.st.SetEventCursor(ctx, w.cfg.Consumer, after); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// Delivered but not recorded: a restart sends it again
				// (at least once).
				w.log.Error("webhook: record cursor", "event", e.ID, "error", err)
			}
		}
		if len(evs) == 100 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.cfg.Poll):
		}
	}
}

// cursor reads the stored cursor, retrying store errors until ctx ends.
func (w *Webhook) cursor(ctx context.Context) (int64, error) {
	for {
		after, err := w.st.EventCursor(ctx, w.cfg.Consumer)
		if err == nil {
			return after, nil
		}
		w.log.Error("webhook: read cursor", "consumer", w.cfg.Consumer, "error", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(w.cfg.Poll):
		}
	}
}

// deliver POSTs e until a 2xx answer or ctx ends (then ctx's error).
func (w *Webhook) deliver(ctx context.Context, e hub.Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("webhook: event %d: %w", e.ID, err)
	}
	backoff := w.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := w.post(ctx, e, body)
		if err == nil {
			w.log.Debug("webhook: event delivered", "event", e.ID, "kind", e.Kind, "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.log.Warn("webhook: delivery failed; retrying", "event", e.ID, "attempt", attempt, "retry_in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

func (w *Webhook) post(ctx context.Context, e hub.Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEventID, strconv.FormatInt(e.ID, 10))
	req.Header.Set(HeaderEventKind, e.Kind)
	if w.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, body))
	}
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: status %s", w.where, resp.Status)
	}
	return nil
}
