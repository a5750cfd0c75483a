package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
)

// openPostgres opens database.url, trying database.startup_retries times
// database.startup_retry_interval apart while PostgreSQL cannot be
// reached: nodes and their database are often started together (one
// host's boot, one orchestrator's rollout), and a node that quits because
// the database is a second late needs someone to restart it. Errors that
// waiting cannot fix (wrong password, no such database, bad URL) fail at
// once.
func openPostgres(ctx context.Context, cfg *conf.Config, log *slog.Logger) (*postgres.Store, error) {
	retries := max(cfg.Database.StartupRetries, 1)
	for attempt := 1; ; attempt++ {
		s, err := postgres.Open(ctx, cfg.Database.URL, postgres.Options{
			PoolSize: cfg.Database.PoolSize, Timeout: cfg.Database.Timeout, Logger: log,
		})
		if err == nil {
			if attempt > 1 {
				log.Info("database reached", "attempt", attempt)
			}
			return s, nil
		}
		if !errors.Is(err, storage.ErrUnavailable) || attempt >= retries {
			return nil, fmt.Errorf("server: opening database.url (attempt %d of %d): %w", attempt, retries, err)
		}
		log.Warn("database unreachable; retrying", "attempt", attempt, "of", retries,
			"in", cfg.Database.StartupRetryInterval, "err", err)
		t := time.NewTimer(cfg.Database.StartupRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("server: opening database.url: %w", ctx.Err())
		case <-t.C:
		}
	}
}
