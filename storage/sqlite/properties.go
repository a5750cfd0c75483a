package sqlite

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/storage"
)

// GetProperty returns a property; storage.ErrNotFound when unset.
func (s *Store) GetProperty(ctx context.Context, name string) (string, error) {
	var v string
	err := s.pointRow(ctx, "SELECT value FROM properties WHERE name = ?", name).Scan(&v)
	return v, mapErr(err)
}

// SetProperty sets a property and tells this process's listeners.
func (s *Store) SetProperty(ctx context.Context, name, value string) error {
	_, err := s.exec(ctx, `INSERT INTO properties (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	if err == nil {
		s.notify(name, value)
	}
	return err
}

// CreateProperty sets a property unless it is set and returns its value.
func (s *Store) CreateProperty(ctx context.Context, name, value string) (string, error) {
	if _, err := s.exec(ctx, `INSERT INTO properties (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return "", err
	}
	return s.GetProperty(ctx, name)
}

// DeleteProperty removes a property (no error when unset) and tells this
// process's listeners with the value "".
func (s *Store) DeleteProperty(ctx context.Context, name string) error {
	_, err := s.exec(ctx, "DELETE FROM properties WHERE name = ?", name)
	if err == nil {
		s.notify(name, "")
	}
	return err
}

// ListProperties returns every property.
func (s *Store) ListProperties(ctx context.Context) (map[string]string, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.query(ctx, "SELECT name, value FROM properties")
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, mapErr(err)
		}
		out[k] = v
	}
	return out, mapErr(rows.Err())
}

type propListener struct {
	ch chan string
}

// ListenProperty calls fn with the property's value ("" when unset) once
// it is listening, and again after every change made through this Store,
// until ctx ends; it blocks, so run it in its own goroutine. An embedded
// store has one node, so in-process changes are all there are. Calls to fn
// are sequential; when changes come faster than fn returns, fn sees the
// latest value.
func (s *Store) ListenProperty(ctx context.Context, name string, fn func(value string)) {
	l := &propListener{ch: make(chan string, 1)}
	s.mu.Lock()
	if s.listeners[name] == nil {
		s.listeners[name] = map[*propListener]struct{}{}
	}
	s.listeners[name][l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners[name], l)
		s.mu.Unlock()
	}()
	v, err := s.GetProperty(ctx, name)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		v = ""
	}
	last := v
	fn(v)
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-l.ch:
			if v != last {
				last = v
				fn(v)
			}
		}
	}
}

func (s *Store) notify(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners[name] {
		// Keep only the newest value.
		select {
		case <-l.ch:
		default:
		}
		l.ch <- value
	}
}
