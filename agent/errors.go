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

var (
	// ErrHubUnreachable means enrollment got no HTTP answer from the hub.
	ErrHubUnreachable = errors.New("hub unreachable")
	// ErrEnrollRefused means the hub refused the join token (a 4xx answer:
	// unknown, used or expired token, or a bad request).
	ErrEnrollRefused = errors.New("enrollment refused")
	// ErrEnrollFailed means the hub answered enrollment with a server error
	// or a malformed success.
	ErrEnrollFailed = errors.New("enrollment failed")
	// ErrInvalidCredentials means a credential file or an enrollment answer
	// lacks a field or has a malformed one.
	ErrInvalidCredentials = errors.New("invalid agent credentials")
)
