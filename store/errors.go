package store

import "fmt"

// kindError is an error a user reads: msg says what went wrong and what to do, kind is the
// Err… value callers branch on with errors.Is. Keeping the two apart lets the message read as
// one sentence instead of ending in ": not found".
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errorf returns an error with the formatted message that wraps kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
