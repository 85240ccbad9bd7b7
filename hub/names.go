package hub

import (
	"fmt"
	"regexp"
)

// Name rules. Workspace and experiment names appear in URLs and paths;
// param, tag and metric keys may also contain '/' (as in "train/loss").
const (
	NameRule     = "1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
	KeyRule      = "1-250 characters from A-Z a-z 0-9 . _ - /, starting with a letter, digit or _"
	MaxValueLen  = 8000 // bytes of a param or tag value
	MaxLogLine   = 64 << 10
	MaxRunNameLn = 256
)

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	keyRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/-]{0,249}$`)
)

// CheckName validates a workspace or experiment name; what says which
// ("workspace", "experiment") for the error. The error wraps ErrInvalid.
func CheckName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s name %q: must be %s: %w", what, name, NameRule, ErrInvalid)
	}
	return nil
}

// CheckKey validates a param, tag or metric key; what says which.
func CheckKey(what, key string) error {
	if !keyRE.MatchString(key) {
		return fmt.Errorf("%s key %q: must be %s: %w", what, key, KeyRule, ErrInvalid)
	}
	return nil
}

// CheckValue validates a param or tag value.
func CheckValue(what, key, value string) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("%s %q: value of %d bytes exceeds the limit of %d: %w", what, key, len(value), MaxValueLen, ErrInvalid)
	}
	return nil
}
