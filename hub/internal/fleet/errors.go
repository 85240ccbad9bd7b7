package fleet

import "errors"

var (
	// ErrInvalidConfig means a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("invalid fleet config")
	// ErrInvalidDesired means a DesiredState or agent id given to
	// SetDesired is malformed.
	ErrInvalidDesired = errors.New("invalid desired state")
	// ErrStaleGeneration means SetDesired was given a generation older
	// than the one already set for the agent.
	ErrStaleGeneration = errors.New("desired generation older than the current one")
	// ErrNotConnected means the fleet client is not connected to the
	// broker; the desired state is kept and published on reconnect.
	ErrNotConnected = errors.New("not connected to the broker")
	// ErrCorruptBlob means a blob's content does not match its digest.
	ErrCorruptBlob = errors.New("blob content does not match its digest")
)
