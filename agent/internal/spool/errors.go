package spool

import "errors"

var (
	// ErrClosed means the spool was used after Close.
	ErrClosed = errors.New("spool closed")
	// ErrTooLarge means a payload does not fit: it is larger than
	// MaxPayload, or its record is larger than Config.MaxBytes.
	ErrTooLarge = errors.New("payload too large")
	// ErrAckBeyond means Ack was given a sequence number that Append has
	// not assigned yet.
	ErrAckBeyond = errors.New("ack beyond last assigned sequence")
	// ErrBadState means the spool's state file could not be parsed. Open
	// returns it and touches nothing, so no queued data is lost.
	ErrBadState = errors.New("bad spool state file")
	// ErrInvalidConfig means a Config field is out of range; the message
	// names the field.
	ErrInvalidConfig = errors.New("invalid spool config")
)
