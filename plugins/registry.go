package plugins

import (
	"fmt"
	"sort"
	"sync"
)

// Constructor builds a plugin with no side effects; Start does the work.
type Constructor func() Plugin

var (
	regMu    sync.RWMutex
	registry = map[string]Constructor{}
)

// Register makes a built-in plugin available under id. It is called from
// init; an empty or duplicate id is a programming error and panics.
func Register(id string, c Constructor) {
	if id == "" {
		panic("plugins: Register with empty id")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[id]; dup {
		panic(fmt.Sprintf("plugins: duplicate plugin id %q", id))
	}
	registry[id] = c
}

// Registered returns the ids of every registered built-in, sorted.
func Registered() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	ids := make([]string, 0, len(registry))
	for id := range registry {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// New constructs the registered plugin id.
func New(id string) (Plugin, error) {
	regMu.RLock()
	c, ok := registry[id]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("plugins: unknown plugin %q", id)
	}
	return c(), nil
}
