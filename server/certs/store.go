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
// It is deliberately small (Caddy's certmagic.Storage has the same shape);
// DBStore implements it on the node's database.
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

// Locker is what a storage backend implements to give DBStore a
// cluster-wide lock (storage/postgres: an advisory lock; storage/sqlite:
// an in-process one, the embedded store having one node).
type Locker interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// The database layout of DBStore.
const (
	// kvName and kvOwner place the values in the key/value module store:
	// an owner with a slash, which no account's JID can be, so deleting an
	// account never touches them.
	kvName  = "certs"
	kvOwner = "aviary/certs"
	// changedProperty gets a fresh random value whenever a certificate is
	// written or deleted, so that every node's ListenProperty hears it.
	changedProperty = "certs.changed"
)

// certPrefix is the key prefix of stored certificates.
const certPrefix = "cert/"

// Database is what DBStore needs of the node's store (storage.Store has
// it all).
type Database interface {
	storage.Modules
	storage.Properties
}

// DBStore is a Store on the database every node shares: values in the
// key/value module store "certs" (storage.Modules), the change marker in
// the shared properties, heard through storage.PropertyListener when the
// store has it (PostgreSQL's LISTEN/NOTIFY reaches every node), and the
// lock of the store's Locker, else a lock inside this process.
type DBStore struct {
	db   Database
	kv   storage.KeyValue
	mu   sync.Mutex
	held map[string]bool // locks taken here when db has no Locker
}

var _ Store = (*DBStore)(nil)

// NewDBStore returns a Store on db.
func NewDBStore(db Database) *DBStore {
	return &DBStore{db: db, kv: db.KeyValue(kvName), held: map[string]bool{}}
}

// Get reads key.
func (s *DBStore) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.kv.Get(ctx, kvOwner, key)
	if err != nil {
		return nil, fmt.Errorf("certs: reading %s: %w", key, err)
	}
	return e.Value, nil
}

// Put writes key, then, for a certificate, the change marker.
func (s *DBStore) Put(ctx context.Context, key string, value []byte) error {
	if _, err := s.kv.Set(ctx, kvOwner, key, value, storage.Limits{}); err != nil {
		return fmt.Errorf("certs: writing %s: %w", key, err)
	}
	return s.changed(ctx, key)
}

// Delete removes key, then, for a certificate, sets the change marker.
func (s *DBStore) Delete(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, kvOwner, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("certs: deleting %s: %w", key, err)
	}
	return s.changed(ctx, key)
}

func (s *DBStore) changed(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, certPrefix) {
		return nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	if err := s.db.SetProperty(ctx, changedProperty, hex.EncodeToString(b[:])); err != nil {
		return fmt.Errorf("certs: telling the other nodes: %w", err)
	}
	return nil
}

// List reads every key starting with prefix.
func (s *DBStore) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	keys, err := s.kv.Keys(ctx, kvOwner)
	if err != nil {
		return nil, fmt.Errorf("certs: listing %s: %w", prefix, err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		e, err := s.kv.Get(ctx, kvOwner, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since Keys
		}
		if err != nil {
			return nil, fmt.Errorf("certs: reading %s: %w", k, err)
		}
		out[k] = e.Value
	}
	return out, nil
}

// TryLock uses the store's Locker, or a lock of this process.
func (s *DBStore) TryLock(ctx context.Context, name string) (func(), bool, error) {
	if l, ok := s.db.(Locker); ok {
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
func (s *DBStore) Watch(ctx context.Context, fn func()) {
	l, ok := s.db.(storage.PropertyListener)
	if !ok {
		fn()
		return
	}
	l.ListenProperty(ctx, changedProperty, func(string) { fn() })
}
