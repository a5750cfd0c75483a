package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Console sign-ins (the cookie sessions of admins using the console) live
// in the shared key/value store, so that a node restart does not sign
// anyone out (it did: they were kept in memory, while API tokens survived)
// and any node of the cluster accepts a cookie another node issued (one
// console behind a load balancer).
//
// What is stored, under the store "admin" and the owner
// "aviary/console-sessions" (not an account's bare JID, so no account
// deletion touches it):
//   - key: the SHA-256 of the session ID, never the ID itself: someone
//     who reads the database cannot turn a key into a cookie;
//   - value: the admin, the expiry, and the message for the next page
//     (flash), as JSON.
//
// The CSRF token is derived from the session ID (csrfOf) and not stored,
// so nothing in the database acts on the console.
//
// A session expires sessionTTL after it was last used. The stored expiry
// moves forward at most once per sessionRefresh, so reading pages does not
// write to the database on every request. Expired sessions are deleted when
// they are read, and all of them when someone signs in.
const (
	// SessionStore names the key/value store of console sign-ins
	// (Options.Sessions).
	SessionStore   = "admin"
	sessionOwner   = "aviary/console-sessions"
	sessionTTL     = 8 * time.Hour
	sessionRefresh = 5 * time.Minute
	// sessionIDLen is the length of a session ID (randomToken: 24
	// random bytes in hex); a cookie of any other shape is refused
	// without asking the store.
	sessionIDLen = 48
)

// errNoSession means the cookie names no live session: never issued,
// signed out, or expired.
var errNoSession = errors.New("api: no such console session")

// webSession is one signed-in admin, as stored.
type webSession struct {
	Admin    string    `json:"admin"`
	Expires  time.Time `json:"expires"`
	Flash    string    `json:"flash,omitempty"`
	FlashErr bool      `json:"flash_err,omitempty"`
}

// sessions keeps console sign-ins in a storage.KeyValue shared by the
// cluster (see above).
type sessions struct {
	kv  storage.KeyValue
	ttl time.Duration
	now func() time.Time
}

func newSessions(kv storage.KeyValue, ttl time.Duration) *sessions {
	return &sessions{kv: kv, ttl: ttl, now: time.Now}
}

// sessionKey is where session id is stored.
func sessionKey(id string) string { return hashToken(id) }

// csrfOf is the CSRF token of session id. Whoever holds the cookie can
// compute it; a page script of another origin cannot read the cookie, and
// the database holds only the ID's hash.
func csrfOf(id string) string { return hashToken("csrf\x00" + id)[:sessionIDLen] }

func validSessionID(id string) bool {
	if len(id) != sessionIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// create signs admin in and returns the new session's ID and CSRF token.
func (s *sessions) create(ctx context.Context, admin string) (id, csrf string, err error) {
	s.sweep(ctx)
	id = randomToken()
	raw, _ := json.Marshal(webSession{Admin: admin, Expires: s.now().Add(s.ttl).UTC()})
	if _, err := s.kv.Set(ctx, sessionOwner, sessionKey(id), raw, storage.Limits{}); err != nil {
		return "", "", fmt.Errorf("api: storing the console session: %w", err)
	}
	return id, csrfOf(id), nil
}

// get returns session id, moving its expiry forward; errNoSession when
// there is none.
func (s *sessions) get(ctx context.Context, id string) (webSession, error) {
	if !validSessionID(id) {
		return webSession{}, errNoSession
	}
	e, err := s.kv.Get(ctx, sessionOwner, sessionKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return webSession{}, errNoSession
	}
	if err != nil {
		return webSession{}, err
	}
	var ws webSession
	if err := json.Unmarshal(e.Value, &ws); err != nil {
		return webSession{}, fmt.Errorf("api: a stored console session: %w", err)
	}
	now := s.now()
	if !now.Before(ws.Expires) {
		s.delete(ctx, id)
		return webSession{}, errNoSession
	}
	if ws.Expires.Sub(now) < s.ttl-sessionRefresh {
		ws.Expires = now.Add(s.ttl).UTC()
		raw, _ := json.Marshal(ws)
		// Another request may have refreshed it meanwhile: either write
		// is as good.
		_, _ = s.kv.CompareAndSet(ctx, sessionOwner, sessionKey(id), e.Version, raw, storage.Limits{})
	}
	return ws, nil
}

// update changes session id's stored record with fn, unless it is gone.
func (s *sessions) update(ctx context.Context, id string, fn func(ws *webSession)) error {
	if !validSessionID(id) {
		return errNoSession
	}
	return storage.UpdateKV(ctx, s.kv, sessionOwner, sessionKey(id), storage.Limits{},
		func(old []byte, exists bool) ([]byte, bool, error) {
			if !exists {
				return nil, false, errNoSession
			}
			var ws webSession
			if err := json.Unmarshal(old, &ws); err != nil {
				return nil, true, nil
			}
			fn(&ws)
			raw, _ := json.Marshal(ws)
			return raw, false, nil
		})
}

// setFlash leaves a message for the next page session id shows.
func (s *sessions) setFlash(ctx context.Context, id, msg string, isErr bool) error {
	return s.update(ctx, id, func(ws *webSession) { ws.Flash, ws.FlashErr = msg, isErr })
}

// clearFlash forgets session id's message once a page showed it.
func (s *sessions) clearFlash(ctx context.Context, id string) error {
	return s.update(ctx, id, func(ws *webSession) { ws.Flash, ws.FlashErr = "", false })
}

// delete signs session id out.
func (s *sessions) delete(ctx context.Context, id string) {
	if validSessionID(id) {
		_ = s.kv.Delete(ctx, sessionOwner, sessionKey(id))
	}
}

// sweep deletes the expired sessions. Sessions are few (one per admin
// sign-in within sessionTTL), so reading them all at each sign-in is
// cheap.
func (s *sessions) sweep(ctx context.Context) {
	keys, err := s.kv.Keys(ctx, sessionOwner)
	if err != nil {
		return
	}
	now := s.now()
	for _, k := range keys {
		e, err := s.kv.Get(ctx, sessionOwner, k)
		if err != nil {
			continue
		}
		var ws webSession
		if json.Unmarshal(e.Value, &ws) != nil || !now.Before(ws.Expires) {
			_ = s.kv.Delete(ctx, sessionOwner, k)
		}
	}
}
