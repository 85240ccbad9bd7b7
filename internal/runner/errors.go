package runner

import "errors"

var (
	// ErrTooLarge is wrapped by the error Submit (and Pack) return when the
	// directory exceeds the snapshot limits; the message names the limit
	// and the biggest offenders.
	ErrTooLarge = errors.New("snapshot too large")
	// ErrInvalidOptions is wrapped when Options fail validation.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrRecording is wrapped by the error Submit returns when the command
	// ran but part of what it produced (logs, metrics, params, tags,
	// artifacts or the final status) could not be recorded on the hub.
	ErrRecording = errors.New("recording on the hub failed")
)
