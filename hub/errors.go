package hub

import "errors"

// Error classes shared by the store, the API and the client. Wrap them with
// context: fmt.Errorf("run %q: %w", id, hub.ErrNotFound). The API maps each
// class to an HTTP status and a "code" string; the client maps them back so
// errors.Is works on both sides.
var (
	ErrInvalid  = errors.New("invalid")   // 400 "invalid"
	ErrNotFound = errors.New("not found") // 404 "not_found"
	ErrConflict = errors.New("conflict")  // 409 "conflict"
	ErrTooLarge = errors.New("too large") // 413 "too_large"
)
