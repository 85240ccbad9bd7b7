package cli

import (
	"errors"
	"fmt"
	"strings"
)

// errUsage marks a usage error (exit code 2).
var errUsage = errors.New("usage error")

// usageError wraps a message as a usage error.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%s%w", fmt.Sprintf(format, args...), usageMark{})
}

// usageMark is wrapped by usage errors; it prints as nothing so the message
// stays one clean line.
type usageMark struct{}

func (usageMark) Error() string        { return "" }
func (usageMark) Is(target error) bool { return target == errUsage }

// exitError asks Main to exit with Code, printing Err if it is not nil.
type exitError struct {
	Code int
	Err  error
}

func (e *exitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *exitError) Unwrap() error { return e.Err }

// isCobraUsage reports whether err is one of cobra's own usage errors,
// which it returns as plain strings.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "invalid argument", "flag needs an argument", "accepts ", "requires at least", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
