package agent

import "errors"

var (
	// ErrInvalidConfig means a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("invalid agent config")
	// ErrInvalidDesired means a DesiredState (from the hub or from disk)
	// breaks the protocol's rules; it is ignored as a whole.
	ErrInvalidDesired = errors.New("invalid desired state")
	// ErrInvalidServing means the persisted serving record is malformed.
	ErrInvalidServing = errors.New("invalid serving record")
)
