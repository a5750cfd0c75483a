package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"
)

// scramCache keeps SCRAM salted passwords across runs (RFC 5802 §5.1 lets
// a client cache them per salt and iteration count). The load tool's own
// PBKDF2 costs ~6 ms of CPU per login on a small VM, as much as the server's
// whole login; with the cache primed by an unmeasured run, the measured
// login rate is the server's. The file holds one "key<TAB>value" per line.
type scramCache struct {
	mu    sync.Mutex
	path  string
	m     map[string][]byte
	added int
}

// cache is used by every SCRAM login; nil means no caching.
var cache *scramCache

func scramKey(user, salt string, iter int) string {
	return fmt.Sprintf("%s\x1f%s\x1f%d", user, salt, iter)
}

func loadSCRAMCache(path string) (*scramCache, error) {
	c := &scramCache{path: path, m: make(map[string][]byte)}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		kb, err1 := base64.StdEncoding.DecodeString(k)
		vb, err2 := base64.StdEncoding.DecodeString(v)
		if err1 == nil && err2 == nil {
			c.m[string(kb)] = vb
		}
	}
	return c, sc.Err()
}

func (c *scramCache) get(key string) []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *scramCache) put(key string, v []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		c.added++
	}
	c.m[key] = v
}

// save rewrites the file when entries were added.
func (c *scramCache) save() error {
	if c == nil || c.added == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for k, v := range c.m {
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(k)))
		b.WriteByte('\t')
		b.WriteString(base64.StdEncoding.EncodeToString(v))
		b.WriteByte('\n')
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}
