package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// PropertyChannel is the LISTEN/NOTIFY channel SetProperty and
// DeleteProperty notify, with the property's name as the payload.
const PropertyChannel = "aviary_properties"

// GetProperty returns a property; storage.ErrNotFound when unset.
func (s *Store) GetProperty(ctx context.Context, name string) (string, error) {
	var v string
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, qGetProperty, name).Scan(&v)
	})
	return v, err
}

// SetProperty sets a property and, in the same statement, notifies
// PropertyChannel; PostgreSQL delivers the notification to every listening
// node when the statement commits.
func (s *Store) SetProperty(ctx context.Context, name, value string) error {
	return s.exec(ctx, `WITH up AS (
		INSERT INTO properties (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value RETURNING name)
		SELECT pg_notify('`+PropertyChannel+`', name) FROM up`, name, value)
}

// CreateProperty sets a property unless it is set and returns its value.
// The read is a statement of its own: one statement's snapshot could miss
// the row of a node whose insert won the race.
func (s *Store) CreateProperty(ctx context.Context, name, value string) (string, error) {
	if err := s.exec(ctx, `INSERT INTO properties (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return "", err
	}
	return s.GetProperty(ctx, name)
}

// DeleteProperty removes a property (no error when unset) and notifies
// PropertyChannel when there was one.
func (s *Store) DeleteProperty(ctx context.Context, name string) error {
	return s.exec(ctx, `WITH d AS (DELETE FROM properties WHERE name = $1 RETURNING name)
		SELECT pg_notify('`+PropertyChannel+`', name) FROM d`, name)
}

// ListProperties returns every property.
func (s *Store) ListProperties(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.do(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT name, value FROM properties")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			out[k] = v
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListenProperty calls fn with the property's value ("" when unset) as soon
// as it is listening, then whenever any node changes it, until ctx ends. It
// blocks: run it in its own goroutine.
//
// It holds one connection of its own (outside the pool) with
// LISTEN aviary_properties. When that connection breaks it reconnects with
// backoff (up to 5s apart), re-reads the value and calls fn if it changed
// meanwhile, so a node that lost the database for a while still ends up
// with the latest value. Calls to fn are sequential and only made when the
// value differs from the last one passed.
//
// The cluster uses it for the cluster-wide enable switch.
func (s *Store) ListenProperty(ctx context.Context, name string, fn func(value string)) {
	var last string
	first := true
	deliver := func(v string) {
		if first || v != last {
			first, last = false, v
			fn(v)
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, name, deliver, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("postgres: property listener reconnecting", "property", name, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenOnce runs one listening connection until it fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context, name string, deliver func(string), connected func()) error {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	conn, err := pgx.ConnectConfig(cctx, s.cfg.ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(c)
	}()
	read := func() (string, error) {
		c, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		var v string
		err := conn.QueryRow(c, qGetProperty, name).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		return v, err
	}
	c, cancelL := context.WithTimeout(ctx, s.timeout)
	_, err = conn.Exec(c, "LISTEN "+PropertyChannel)
	cancelL()
	if err != nil {
		return err
	}
	// Read after LISTEN: no change can slip between the two.
	v, err := read()
	if err != nil {
		return err
	}
	connected()
	deliver(v)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != name {
			continue
		}
		v, err := read()
		if err != nil {
			return err
		}
		deliver(v)
	}
}
