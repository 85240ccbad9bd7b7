package wire

import "errors"

// ErrMalformed: a frame or payload is not well-formed.
var ErrMalformed = errors.New("malformed device protocol frame")

// ErrVersion: a frame header carries another framing version. ReadFrame
// wraps it together with ErrMalformed and still returns the frame's op and
// id, so a receiver can answer before it hangs up.
var ErrVersion = errors.New("unsupported framing version")
