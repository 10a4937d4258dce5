package asciicast

import (
	"context"
	"io"
	"time"
)

// PlayOptions control playback.
type PlayOptions struct {
	// Speed multiplies playback speed; 0 means 1.
	Speed float64
	// MaxIdle caps pauses between events (0: keep original gaps).
	MaxIdle time.Duration
	// Sleep waits; tests replace it. nil uses a timer honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the recording's output events to w with their timing.
func Play(ctx context.Context, w io.Writer, r *Reader, o PlayOptions) error {
	if o.Speed <= 0 {
		o.Speed = 1
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	prev := 0.0
	for {
		e, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		gap := time.Duration((e.Time - prev) / o.Speed * float64(time.Second))
		prev = e.Time
		if o.MaxIdle > 0 && gap > o.MaxIdle {
			gap = o.MaxIdle
		}
		if gap > 0 {
			if err := o.Sleep(ctx, gap); err != nil {
				return err
			}
		}
		if e.Code == Output {
			if _, err := io.WriteString(w, e.Data); err != nil {
				return err
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
