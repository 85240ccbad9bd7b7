// Package webhook delivers the hub's event log to an HTTP endpoint: each
// event is POSTed as one JSON object (hub.Event), in event ID order, one at
// a time.
//
// Delivery is at least once. A delivery is acknowledged by any 2xx answer;
// the webhook then records the event's ID as its cursor in the store
// (hub.EventStore.SetEventCursor), durably, before sending the next. Any
// other answer, or no answer within the timeout, is retried with
// exponential backoff, forever, and later events wait behind it (order is
// kept). A hub restart resumes after the recorded cursor, so acknowledged
// events are not sent again; an event whose 2xx arrived but whose cursor
// write did not complete (a crash in between) is sent again. Receivers
// that must not act twice deduplicate by the event ID (also in the
// X-Atelier-Event-Id header).
//
// When a secret is configured, every request carries
// X-Atelier-Signature: sha256=<hex HMAC-SHA256 of the body keyed by the
// secret>.
//
// The package does not record events, decide which events exist, or keep
// events for a webhook that is down: events removed by the hub's retention
// before they were delivered are skipped (and logged).
package webhook
