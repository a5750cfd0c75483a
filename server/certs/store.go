package certs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aviary-im/aviary/storage"
)

// Store keeps what every node of a cluster must see alike: certificates,
// the ACME account, pending challenge answers and the state of failed
// orders. Keys are slash-separated paths ("cert/example.com",
// "challenge/http-01/TOKEN"); values are opaque bytes.
//
// It is deliberately small (Caddy's certmagic.Storage has the same shape)
// so that it can move onto the general key/value store of storage/ once
// that exists; PropertyStore implements it today on storage.Properties.
type Store interface {
	// Get returns the value under key, or an error wrapping
	// storage.ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put writes the value under key. Writing a key under "cert/" tells
	// every node's Watch.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key (no error when absent). Deleting a key under
	// "cert/" tells every node's Watch.
	Delete(ctx context.Context, key string) error
	// List returns every key starting with prefix, with its value.
	List(ctx context.Context, prefix string) (map[string][]byte, error)
	// TryLock takes the cluster-wide lock called name if nobody holds it,
	// without waiting: ok is false when another node has it. The lock must
	// end by itself when its holder dies.
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
	// Watch calls fn once it is watching, then after a key under "cert/"
	// was written or deleted by any node (calls may be coalesced), until
	// ctx ends. It blocks. A store that cannot watch returns at once after
	// the first call: the Manager also re-reads the store periodically.
	Watch(ctx context.Context, fn func())
}

// Locker is what a storage backend implements to give PropertyStore a
// cluster-wide lock (storage/postgres: an advisory lock; storage/sqlite:
// an in-process one, the embedded store having one node).
type Locker interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// Property names of PropertyStore.
const (
	propertyPrefix = "certs."
	// changedProperty gets a fresh random value whenever a certificate is
	// written or deleted, so that every node's ListenProperty hears it.
	changedProperty = "certs.changed"
)

// certPrefix is the key prefix of stored certificates.
const certPrefix = "cert/"

// PropertyStore is a Store on the cluster's shared properties
// (storage.Properties, a table of both backends): key K is the property
// "certs.K". Watch uses storage.PropertyListener when the store has it
// (PostgreSQL's LISTEN/NOTIFY reaches every node), and TryLock the store's
// Locker, else a lock inside this process.
//
// Values are strings in that table; certificates and keys are PEM text,
// so they are stored as they are.
type PropertyStore struct {
	props storage.Properties
	mu    sync.Mutex
	held  map[string]bool // locks taken here when props has no Locker
}

var _ Store = (*PropertyStore)(nil)

// NewPropertyStore returns a Store on props.
func NewPropertyStore(props storage.Properties) *PropertyStore {
	return &PropertyStore{props: props, held: map[string]bool{}}
}

// Get reads the property "certs."+key.
func (s *PropertyStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.props.GetProperty(ctx, propertyPrefix+key)
	if err != nil {
		return nil, fmt.Errorf("certs: reading %s: %w", key, err)
	}
	return []byte(v), nil
}

// Put writes the property "certs."+key, then, for a certificate, the
// change marker.
func (s *PropertyStore) Put(ctx context.Context, key string, value []byte) error {
	if err := s.props.SetProperty(ctx, propertyPrefix+key, string(value)); err != nil {
		return fmt.Errorf("certs: writing %s: %w", key, err)
	}
	return s.changed(ctx, key)
}

// Delete removes the property "certs."+key, then, for a certificate, sets
// the change marker.
func (s *PropertyStore) Delete(ctx context.Context, key string) error {
	if err := s.props.DeleteProperty(ctx, propertyPrefix+key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("certs: deleting %s: %w", key, err)
	}
	return s.changed(ctx, key)
}

func (s *PropertyStore) changed(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, certPrefix) {
		return nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	if err := s.props.SetProperty(ctx, changedProperty, hex.EncodeToString(b[:])); err != nil {
		return fmt.Errorf("certs: telling the other nodes: %w", err)
	}
	return nil
}

// List reads every property named "certs."+prefix+"…".
func (s *PropertyStore) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	all, err := s.props.ListProperties(ctx)
	if err != nil {
		return nil, fmt.Errorf("certs: listing %s: %w", prefix, err)
	}
	out := map[string][]byte{}
	for name, v := range all {
		if key, ok := strings.CutPrefix(name, propertyPrefix); ok && strings.HasPrefix(key, prefix) {
			out[key] = []byte(v)
		}
	}
	return out, nil
}

// TryLock uses the store's Locker, or a lock of this process.
func (s *PropertyStore) TryLock(ctx context.Context, name string) (func(), bool, error) {
	if l, ok := s.props.(Locker); ok {
		return l.TryLock(ctx, "certs."+name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[name] {
		return nil, false, nil
	}
	s.held[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.held, name)
			s.mu.Unlock()
		})
	}, true, nil
}

// Watch listens to the change marker when the store can (see
// storage.PropertyListener).
func (s *PropertyStore) Watch(ctx context.Context, fn func()) {
	l, ok := s.props.(storage.PropertyListener)
	if !ok {
		fn()
		return
	}
	l.ListenProperty(ctx, changedProperty, func(string) { fn() })
}
