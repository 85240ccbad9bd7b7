package wire

import "errors"

// ErrMalformed: a frame or payload is not well-formed.
var ErrMalformed = errors.New("malformed device protocol frame")
