// Package client is the Go SDK of the hub's REST API (the routes listed in
// package hub). It owns the HTTP request shapes, the mapping of error
// responses back to the hub error classes (hub.ErrInvalid, hub.ErrNotFound,
// hub.ErrConflict, hub.ErrTooLarge) and client-side batching of metrics for
// training code (RunLogger).
//
// It does not retry requests, cache anything or hold connections beyond what
// net/http pools; callers bound each call with its context. A Client is safe
// for concurrent use.
//
// Uploads (PutArtifact, PutSnapshot) stream from the caller's reader and
// downloads stream into the caller's writer: nothing is buffered whole in
// memory.
package client
