package hub

import "fmt"

// ParamConflictError reports an attempt to change a write-once param. It
// wraps ErrConflict.
type ParamConflictError struct {
	Key, Old, New string
}

func (e *ParamConflictError) Error() string {
	return fmt.Sprintf("param %q is already %q; params are write-once and cannot change to %q", e.Key, e.Old, e.New)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ParamConflictError) Unwrap() error { return ErrConflict }
