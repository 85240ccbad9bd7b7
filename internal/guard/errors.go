package guard

import (
	"errors"
	"fmt"
)

// ErrSyntax classifies every parse error; errors.Is(err, ErrSyntax) holds
// for the *SyntaxError values Parse returns.
var ErrSyntax = errors.New("syntax error")

// SyntaxError is a parse error at a 1-based byte column of the expression.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("rollback rule: column %d: %s", e.Col, e.Msg)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }
