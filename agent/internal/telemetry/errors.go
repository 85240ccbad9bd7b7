package telemetry

import "errors"

// ErrInvalidConfig means a Config field is missing or out of range.
var ErrInvalidConfig = errors.New("invalid telemetry config")
