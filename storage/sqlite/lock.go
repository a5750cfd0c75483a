package sqlite

import (
	"context"
	"sync"
)

// locks holds the names locked through TryLock, per Store.
var locks sync.Map // lockKey → struct{}

type lockKey struct {
	s    *Store
	name string
}

// TryLock takes the lock called name if nobody holds it, without waiting:
// ok is false when another holder has it. An embedded store serves one
// node, so the lock only has to exclude the holders inside this process
// (several services, or several nodes of a test sharing the Store).
func (s *Store) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	k := lockKey{s, name}
	if _, held := locks.LoadOrStore(k, struct{}{}); held {
		return nil, false, nil
	}
	var once sync.Once
	return func() { once.Do(func() { locks.Delete(k) }) }, true, nil
}
