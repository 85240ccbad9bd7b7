package sqlite

import "errors"

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("sqlite: store closed")
