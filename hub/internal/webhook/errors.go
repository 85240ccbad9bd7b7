package webhook

import "errors"

// ErrConfig is wrapped by the errors of New for a bad Config.
var ErrConfig = errors.New("webhook config")
