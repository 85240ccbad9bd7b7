package fleetsim

import "errors"

// ErrInvalidConfig means a Config field is out of range; the error names it.
var ErrInvalidConfig = errors.New("fleetsim: invalid config")
