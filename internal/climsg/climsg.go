// Package climsg prints a command's failure the way every postern binary
// does: "PROG: error: what went wrong", then, when there is advice,
// "PROG: hint: what to do" — lowercase, no trailing period, one line each.
package climsg

import (
	"errors"
	"fmt"
	"io"
)

// Hinted is an error that carries advice for the person.
type Hinted struct {
	Err  error
	Hint string
}

// WithHint attaches a hint to err.
func WithHint(err error, hint string) error { return Hinted{Err: err, Hint: hint} }

func (h Hinted) Error() string { return h.Err.Error() }
func (h Hinted) Unwrap() error { return h.Err }

// Print writes err, and its hint if any, for program prog.
func Print(w io.Writer, prog string, err error) {
	fmt.Fprintf(w, "%s: error: %v\n", prog, err)
	var h Hinted
	if errors.As(err, &h) && h.Hint != "" {
		fmt.Fprintf(w, "%s: hint: %s\n", prog, h.Hint)
	}
}
