package client

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// eventValues encodes q as the query of GET /api/v1/events.
func eventValues(q hub.EventQuery, follow bool) url.Values {
	v := url.Values{}
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	for _, k := range q.Kinds {
		v.Add("kind", k)
	}
	if q.Agent != "" {
		v.Set("agent", q.Agent)
	}
	if q.Deployment != "" {
		v.Set("deployment", q.Deployment)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if follow {
		v.Set("follow", "true")
	}
	return v
}

// ListEvents returns one page of the events matching q, in ID order: at
// most q.Limit (0: the hub's default of 1000). Fetch the next page with
// q.After set to the last ID returned.
func (c *Client) ListEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error) {
	var out []hub.Event
	_, err := c.streamEventsOnce(ctx, q, false, func(e hub.Event) error {
		out = append(out, e)
		return nil
	})
	var fe fnError
	if errors.As(err, &fe) {
		err = fe.err
	}
	return out, err
}

// StreamEvents calls fn with every event matching q after q.After, in ID
// order (q.Limit is the page size). Without follow it returns once every
// matching event has been delivered. With follow it then waits for new
// events until ctx is done; a stream that breaks or ends (the hub
// restarts) is reopened after the last event delivered, giving up after a
// few failed attempts in a row (about half a minute). An error from fn
// stops the stream and is returned as is.
func (c *Client) StreamEvents(ctx context.Context, q hub.EventQuery, follow bool, fn func(hub.Event) error) error {
	failures := 0
	page := q.Limit
	if page <= 0 {
		page = 1000
	}
	for {
		got, err := c.streamEventsOnce(ctx, q, follow, func(e hub.Event) error {
			if err := fn(e); err != nil {
				return err
			}
			q.After = e.ID
			return nil
		})
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			return err // the hub refused the query
		}
		if !follow {
			if err != nil {
				return err
			}
			if got < page {
				return nil
			}
			continue // a full page: there may be more
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if failures > maxFollowRetries {
			if err == nil {
				err = errors.New("event stream: the hub keeps ending it")
			}
			return err
		}
		t := time.NewTimer(min(time.Duration(failures)*followBackoff, maxFollowBackoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// streamEventsOnce reads one event stream and returns how many events it
// delivered; an error of fn is returned as an fnError.
func (c *Client) streamEventsOnce(ctx context.Context, q hub.EventQuery, follow bool, fn func(hub.Event) error) (int, error) {
	return readNDJSON(ctx, c, "/api/v1/events", eventValues(q, follow), "event", func(e hub.Event) (bool, error) {
		if e.ID <= q.After {
			return false, nil // already delivered before a reconnect
		}
		if err := fn(e); err != nil {
			return false, err
		}
		q.After = e.ID
		return true, nil
	})
}
