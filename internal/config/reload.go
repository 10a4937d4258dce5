package config

import (
	"context"
	"log/slog"
	"os"
)

// ReloadOn re-reads the configuration at path whenever sig delivers a
// signal (SIGHUP) until ctx is done, and hands it to apply. A file that does
// not load or validate, or that apply refuses, is logged and the
// configuration in force kept.
func ReloadOn(ctx context.Context, sig <-chan os.Signal, path string, apply func(*Config) error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		cfg, err := Load(path)
		if err == nil {
			err = apply(cfg)
		}
		if err != nil {
			log.Error("reload refused: keeping the configuration in force", "path", path, "err", err)
		}
	}
}
