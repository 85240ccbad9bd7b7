package sketch

import "errors"

// ErrInvalid classifies a malformed wire sketch given to FromProto.
var ErrInvalid = errors.New("invalid sketch")
