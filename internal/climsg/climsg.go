package climsg

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// NewLogger is the daemons' logger from their --log-level (debug, info,
// warn, error) and --log-format (text, json) flags, writing to w; a bad
// value is an error with a hint.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, WithHint(fmt.Errorf("bad --log-level %q", level), "use debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, WithHint(fmt.Errorf("bad --log-format %q", format), "use text or json")
}
