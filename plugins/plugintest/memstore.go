package plugintest

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// MemStore is an in-memory storage.Store for plugin tests that do not need
// a database. It follows the storage contract (sentinel errors, DeleteUser
// removing everything of the user) closely enough for plugins.
type MemStore struct {
	mu       sync.Mutex
	users    map[string]storage.User
	roster   map[string]map[string]storage.RosterItem
	rver     map[string]int64
	offline  map[string][]storage.OfflineMessage
	vcards   map[string][]byte
	private  map[string]map[string][]byte
	blocks   map[string][]string
	props    map[string]string
	last     map[string]lastRec
	archive  []storage.ArchivedMessage
	plugins  map[string]storage.PluginRecord
	nodePlug map[string]storage.NodePlugin
	nextID   int64
}

type lastRec struct {
	at     time.Time
	status string
}

var _ storage.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		users: map[string]storage.User{}, roster: map[string]map[string]storage.RosterItem{},
		rver: map[string]int64{}, offline: map[string][]storage.OfflineMessage{},
		vcards: map[string][]byte{}, private: map[string]map[string][]byte{},
		blocks: map[string][]string{}, props: map[string]string{}, last: map[string]lastRec{},
		plugins: map[string]storage.PluginRecord{}, nodePlug: map[string]storage.NodePlugin{},
	}
}

func (s *MemStore) Ping(ctx context.Context) error { return nil }
func (s *MemStore) Close() error                   { return nil }

func (s *MemStore) CreateUser(ctx context.Context, u storage.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.Username]; ok {
		return storage.ErrExists
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	s.users[u.Username] = u
	return nil
}

func (s *MemStore) GetUser(ctx context.Context, username string) (storage.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	if !ok {
		return storage.User{}, storage.ErrNotFound
	}
	return u, nil
}

func (s *MemStore) SetCredentials(ctx context.Context, username string, c storage.Credentials) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	if !ok {
		return storage.ErrNotFound
	}
	u.Credentials = c
	s.users[username] = u
	return nil
}

func (s *MemStore) DeleteUser(ctx context.Context, username string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[username]; !ok {
		return storage.ErrNotFound
	}
	delete(s.users, username)
	for owner := range s.roster {
		if strings.HasPrefix(owner, username+"@") {
			delete(s.roster, owner)
			delete(s.rver, owner)
		}
	}
	for _, m := range []map[string][]byte{s.vcards} {
		for k := range m {
			if strings.HasPrefix(k, username+"@") || k == username {
				delete(m, k)
			}
		}
	}
	for k := range s.private {
		if strings.HasPrefix(k, username+"@") || k == username {
			delete(s.private, k)
		}
	}
	for k := range s.blocks {
		if strings.HasPrefix(k, username+"@") || k == username {
			delete(s.blocks, k)
		}
	}
	for k := range s.last {
		if strings.HasPrefix(k, username+"@") || k == username {
			delete(s.last, k)
		}
	}
	return nil
}

func (s *MemStore) ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.users {
		if strings.Contains(name, contains) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if offset > len(out) {
		offset = len(out)
	}
	out = out[offset:]
	if limit > 0 && limit < len(out) {
		out = out[:limit]
	}
	return out, nil
}

func (s *MemStore) CountUsers(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users), nil
}

func (s *MemStore) GetRoster(ctx context.Context, owner string) ([]storage.RosterItem, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []storage.RosterItem
	for _, it := range s.roster[owner] {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out, s.rver[owner], nil
}

func (s *MemStore) GetRosterItem(ctx context.Context, owner, contact string) (storage.RosterItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.roster[owner][contact]
	if !ok {
		return storage.RosterItem{}, storage.ErrNotFound
	}
	return it, nil
}

func (s *MemStore) UpdateRosterItem(ctx context.Context, owner, contact string, fn storage.RosterUpdate) (storage.RosterItem, bool, bool, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, exists := s.roster[owner][contact]
	if !exists {
		cur = storage.RosterItem{Owner: owner, Contact: contact, Subscription: storage.SubNone}
	}
	upd, remove, err := fn(cur, exists)
	if err != nil {
		return storage.RosterItem{}, false, false, s.rver[owner], err
	}
	if remove {
		if !exists {
			return cur, false, false, s.rver[owner], nil
		}
		delete(s.roster[owner], contact)
		s.rver[owner]++
		return cur, true, true, s.rver[owner], nil
	}
	if s.roster[owner] == nil {
		s.roster[owner] = map[string]storage.RosterItem{}
	}
	upd.Owner, upd.Contact = owner, contact
	s.roster[owner][contact] = upd
	s.rver[owner]++
	return upd, false, true, s.rver[owner], nil
}

func (s *MemStore) RosterVersion(ctx context.Context, owner string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rver[owner], nil
}

func (s *MemStore) Subscribers(ctx context.Context, owner string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c, it := range s.roster[owner] {
		if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *MemStore) StoreOffline(ctx context.Context, owner string, stanza []byte, limit int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && len(s.offline[owner]) >= limit {
		return storage.ErrQuotaExceeded
	}
	s.nextID++
	s.offline[owner] = append(s.offline[owner], storage.OfflineMessage{ID: s.nextID, Stanza: append([]byte(nil), stanza...), Stored: time.Now()})
	return nil
}

func (s *MemStore) TakeOffline(ctx context.Context, owner string) ([]storage.OfflineMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.offline[owner]
	delete(s.offline, owner)
	return out, nil
}

func (s *MemStore) CountOffline(ctx context.Context, owner string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offline[owner]), nil
}

func (s *MemStore) ExpireOffline(ctx context.Context, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for owner, list := range s.offline {
		kept := list[:0]
		for _, m := range list {
			if m.Stored.Before(before) {
				n++
				continue
			}
			kept = append(kept, m)
		}
		s.offline[owner] = kept
	}
	return n, nil
}

func (s *MemStore) GetVCard(ctx context.Context, owner string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vcards[owner]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return v, nil
}

func (s *MemStore) SetVCard(ctx context.Context, owner string, vcard []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vcards[owner] = append([]byte(nil), vcard...)
	return nil
}

func (s *MemStore) GetPrivate(ctx context.Context, owner, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.private[owner][key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return v, nil
}

func (s *MemStore) SetPrivate(ctx context.Context, owner, key string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.private[owner] == nil {
		s.private[owner] = map[string][]byte{}
	}
	s.private[owner][key] = append([]byte(nil), data...)
	return nil
}

func (s *MemStore) BlockList(ctx context.Context, owner string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.blocks[owner]...), nil
}

func (s *MemStore) Block(ctx context.Context, owner string, jids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.blocks[owner]
	for _, j := range jids {
		dup := false
		for _, have := range list {
			if have == j {
				dup = true
			}
		}
		if !dup {
			list = append(list, j)
		}
	}
	s.blocks[owner] = list
	return nil
}

func (s *MemStore) Unblock(ctx context.Context, owner string, jids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(jids) == 0 {
		delete(s.blocks, owner)
		return nil
	}
	var kept []string
	for _, have := range s.blocks[owner] {
		drop := false
		for _, j := range jids {
			if j == have {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, have)
		}
	}
	s.blocks[owner] = kept
	return nil
}

func (s *MemStore) GetProperty(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.props[name]
	if !ok {
		return "", storage.ErrNotFound
	}
	return v, nil
}

func (s *MemStore) SetProperty(ctx context.Context, name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.props[name] = value
	return nil
}

func (s *MemStore) DeleteProperty(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.props, name)
	return nil
}

func (s *MemStore) ListProperties(ctx context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.props {
		out[k] = v
	}
	return out, nil
}

func (s *MemStore) GetLast(ctx context.Context, owner string) (time.Time, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[owner]
	if !ok {
		return time.Time{}, "", storage.ErrNotFound
	}
	return r.at, r.status, nil
}

func (s *MemStore) SetLast(ctx context.Context, owner string, at time.Time, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[owner] = lastRec{at, status}
	return nil
}

func (s *MemStore) AppendArchive(ctx context.Context, m storage.ArchivedMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.archive = append(s.archive, m)
	return nil
}

func (s *MemStore) QueryArchive(ctx context.Context, owner, with, afterID string, limit int) ([]storage.ArchivedMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []storage.ArchivedMessage
	started := afterID == ""
	for _, m := range s.archive {
		if !started {
			started = m.ID == afterID
			continue
		}
		if m.Owner == owner && (with == "" || m.With == with) {
			out = append(out, m)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (s *MemStore) PutPlugin(ctx context.Context, p storage.PluginRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plugins[p.Name+"@"+p.Version] = p
	return nil
}

func (s *MemStore) GetPlugin(ctx context.Context, name, version string) (storage.PluginRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.plugins[name+"@"+version]
	if !ok {
		return storage.PluginRecord{}, storage.ErrNotFound
	}
	return p, nil
}

func (s *MemStore) ListPlugins(ctx context.Context) ([]storage.PluginRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []storage.PluginRecord
	for _, p := range s.plugins {
		p.Artifact = nil
		out = append(out, p)
	}
	return out, nil
}

func (s *MemStore) SetPluginEnabled(ctx context.Context, name, version string, enabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.plugins[name+"@"+version]
	if !ok {
		return storage.ErrNotFound
	}
	p.Enabled = enabled
	s.plugins[name+"@"+version] = p
	return nil
}

func (s *MemStore) DeletePlugin(ctx context.Context, name, version string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.plugins, name+"@"+version)
	return nil
}

func (s *MemStore) SetNodePlugin(ctx context.Context, np storage.NodePlugin) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodePlug[np.Node+"/"+np.Name] = np
	return nil
}

func (s *MemStore) ListNodePlugins(ctx context.Context) ([]storage.NodePlugin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []storage.NodePlugin
	for _, np := range s.nodePlug {
		out = append(out, np)
	}
	return out, nil
}
