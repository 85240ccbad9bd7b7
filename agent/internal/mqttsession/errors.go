package mqttsession

import "errors"

var (
	// ErrNotConnected means there is no broker connection right now.
	ErrNotConnected = errors.New("not connected to the broker")
	// ErrChunkTimeout means a chunk did not arrive after every retry.
	ErrChunkTimeout = errors.New("chunk request timed out")
	// ErrChunkRefused means the hub answered a chunk request with an error.
	ErrChunkRefused = errors.New("chunk refused by the hub")
	// ErrInvalidConfig means a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("invalid session config")
)
