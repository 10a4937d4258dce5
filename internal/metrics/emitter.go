package metrics

import (
	"context"

	"github.com/postern-dev/postern/internal/audit"
)

// CountingEmitter passes every event to Inner and, once written, to
// Observe (which derives the part's metrics from the audit events, so
// that metrics and the audit log cannot disagree); an event Inner fails to
// write is counted in Errors and not observed.
type CountingEmitter struct {
	Inner   audit.Emitter
	Errors  Counter
	Observe func(audit.Event)
}

// Emit writes e through Inner.
func (c CountingEmitter) Emit(ctx context.Context, e audit.Event) error {
	if err := c.Inner.Emit(ctx, e); err != nil {
		c.Errors.Inc()
		return err
	}
	c.Observe(e)
	return nil
}
