package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/atelier-ml/atelier/hub"
)

// ErrClosed is returned by a RunLogger used after Close.
var ErrClosed = errors.New("run logger is closed")

// APIError is an error response of the hub: the HTTP status and the body's
// code and message. errors.Is(err, hub.ErrNotFound) and the like hold for
// the class named by Code (or, when the hub sent no known code, by Status).
type APIError struct {
	Status  int
	Code    string
	Message string
}

// Error returns the hub's message, which already names what failed.
func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("hub answered %d %s", e.Status, http.StatusText(e.Status))
}

// Unwrap maps Code (or Status) to the hub error class, or nil.
func (e *APIError) Unwrap() error {
	switch e.Code {
	case "invalid":
		return hub.ErrInvalid
	case "not_found":
		return hub.ErrNotFound
	case "conflict":
		return hub.ErrConflict
	case "too_large":
		return hub.ErrTooLarge
	}
	switch e.Status {
	case http.StatusBadRequest:
		return hub.ErrInvalid
	case http.StatusNotFound:
		return hub.ErrNotFound
	case http.StatusConflict:
		return hub.ErrConflict
	case http.StatusRequestEntityTooLarge:
		return hub.ErrTooLarge
	}
	return nil
}
