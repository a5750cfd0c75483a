package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// XEP-0484 FAST: a client that authenticated with its password asks for a
// token (<request-token/> in its SASL2 <authenticate/>) and logs in with
// it afterwards in one round trip, with an HT mechanism
// (draft-schmaus-kitten-sasl-ht): the initial response is
//
//	authcid NUL HMAC(token, "Initiator" || channel-binding data)
//
// and the server's additional data on success is HMAC(token, "Responder"
// || channel-binding data). -EXPR binds to tls-exporter, -UNIQ to
// tls-unique, -ENDP to tls-server-end-point, -NONE to nothing.
//
// Where tokens live. In the key/value module store "fast", owner the
// account's bare JID (deleting the account deletes them), one entry per
// client: the key is the SHA-256 of the client's XEP-0388 user-agent id.
// Every node of the cluster reads the same store, so a token issued on
// one node logs in on any other. An entry holds two slots, as XEP-0484
// §6.1 suggests: "new" (issued, not used yet) and "cur" (used). A token
// found in "new" moves to "cur", replacing the older token; so a client
// that lost the answer carrying a new token still logs in with the one
// it has, and a used new token ends the old one.
//
// Tokens are not stored. Each slot holds a random nonce, and the token is
// HMAC-SHA-256(key, account, client, mechanism, nonce) under a key every
// node derives from the secret that keys the fake SCRAM salts
// (FakeSaltKey: from cluster.secret when set, else a property created
// once in the store). HT needs the token itself to check a login, so a
// hash at rest would be as good as the token; a copy of the database
// alone, without cluster.secret, yields no token. Changing cluster.secret
// ends every token (clients fall back to their password).
//
// Replay. XEP-0484's count protects TLS 0-RTT data; this server accepts
// no early data (and does not offer tls-0rtt), but when a client sends a
// count it must exceed the highest one processed for the token, checked
// and stored with a compare-and-set, so two nodes cannot both accept the
// same count.

// HT mechanism names.
const (
	MechHTSHA256Expr = "HT-SHA-256-EXPR"
	MechHTSHA256Uniq = "HT-SHA-256-UNIQ"
	MechHTSHA256Endp = "HT-SHA-256-ENDP"
	MechHTSHA256None = "HT-SHA-256-NONE"
)

// CondCredentialsExpired is the SASL condition of an expired FAST token
// (RFC 6120 §6.5.2; XEP-0484 §4: the client then uses its password).
const CondCredentialsExpired = "credentials-expired"

// FASTStore is the name of the module store of FAST tokens.
const FASTStore = "fast"

// maxFASTClients bounds the clients (entries) one account may hold tokens
// for; past it the expired ones are dropped, and if none is, the client
// gets no token (it keeps using its password).
const maxFASTClients = 64

type htMechanism struct {
	name string
	cb   string // channel binding type; "" for -NONE
	h    func() hash.Hash
}

// htOrder lists the HT mechanisms strongest binding first.
var htOrder = []htMechanism{
	{MechHTSHA256Expr, CBTLSExporter, sha256.New},
	{MechHTSHA256Uniq, CBTLSUnique, sha256.New},
	{MechHTSHA256Endp, CBTLSServerEndPoint, sha256.New},
	{MechHTSHA256None, "", sha256.New},
}

var htMechanisms = func() map[string]htMechanism {
	m := map[string]htMechanism{}
	for _, x := range htOrder {
		m[x.name] = x
	}
	return m
}()

// FASTUse is what the client's XEP-0484 <fast/> element says.
type FASTUse struct {
	// Count is the replay counter; HasCount is false when it was absent.
	Count    uint64
	HasCount bool
	// Invalidate ends the token once this login succeeds.
	Invalidate bool
}

// FASTEnabled reports whether FAST tokens are issued and accepted.
func (a *Authenticator) FASTEnabled() bool { return a.tokens != nil }

// FASTMechanismsOn returns the HT mechanisms a stream can use, strongest
// binding first: none without FAST or on an unencrypted stream, -NONE
// always on an encrypted one, the others when the stream has their
// binding.
func (a *Authenticator) FASTMechanismsOn(c Conn) []string {
	if a.tokens == nil || !c.Secure {
		return nil
	}
	var out []string
	for _, m := range htOrder {
		if m.cb == "" || c.Bindings.Has(m.cb) {
			out = append(out, m.name)
		}
	}
	return out
}

// tokenSlot is one token of a client, as stored (never the token).
type tokenSlot struct {
	Mech    string `json:"mech"`
	Nonce   []byte `json:"nonce"`
	Expires int64  `json:"expires"` // Unix seconds
	Count   uint64 `json:"count"`   // highest XEP-0484 count processed
}

// tokenRecord is one client's entry: XEP-0484 §6.1's two slots.
type tokenRecord struct {
	New *tokenSlot `json:"new,omitempty"`
	Cur *tokenSlot `json:"cur,omitempty"`
}

func decodeRecord(b []byte) (tokenRecord, error) {
	var r tokenRecord
	if len(b) == 0 {
		return r, nil
	}
	err := json.Unmarshal(b, &r)
	return r, err
}

// live reports whether a record still holds an unexpired token.
func (r tokenRecord) live(now time.Time) bool {
	for _, s := range []*tokenSlot{r.New, r.Cur} {
		if s != nil && now.Unix() < s.Expires {
			return true
		}
	}
	return false
}

// clientKey is the store key of a client's tokens.
func clientKey(userAgent string) string {
	sum := sha256.Sum256([]byte(userAgent))
	return hex.EncodeToString(sum[:])
}

// tokenFor derives a slot's token.
func (a *Authenticator) tokenFor(owner, key string, s *tokenSlot) []byte {
	m := hmac.New(sha256.New, a.fastKey)
	for _, part := range []string{owner, key, s.Mech} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	m.Write(s.Nonce)
	tok := make([]byte, base64.RawURLEncoding.EncodedLen(sha256.Size))
	base64.RawURLEncoding.Encode(tok, m.Sum(nil))
	return tok
}

// htMAC is HT's hashed token: HMAC(token, label || channel binding).
func htMAC(h func() hash.Hash, token []byte, label string, cb []byte) []byte {
	m := hmac.New(h, token)
	m.Write([]byte(label))
	m.Write(cb)
	return m.Sum(nil)
}

// IssueFASTToken makes a new token for an authenticated user's client
// (its user-agent id) and mechanism, and returns it with its expiry. It
// goes in the client's "new" slot, replacing a token issued before and
// never used. user is the account's localpart.
func (a *Authenticator) IssueFASTToken(ctx context.Context, user, userAgent, mech string) (string, time.Time, error) {
	if a.tokens == nil {
		return "", time.Time{}, errors.New("auth: FAST is off")
	}
	if _, ok := htMechanisms[mech]; !ok {
		return "", time.Time{}, fmt.Errorf("auth: %q is not a FAST mechanism", mech)
	}
	if userAgent == "" {
		return "", time.Time{}, errors.New("auth: a FAST token needs the client's user-agent id")
	}
	owner, key := user+"@"+a.domain, clientKey(userAgent)
	slot := &tokenSlot{Mech: mech, Nonce: make([]byte, 16), Expires: a.clock.Now().Add(a.tokenLifetime).Unix()}
	if _, err := rand.Read(slot.Nonce); err != nil {
		return "", time.Time{}, err
	}
	write := func() error {
		return storage.UpdateKV(ctx, a.tokens, owner, key, storage.Limits{Items: maxFASTClients},
			func(old []byte, exists bool) ([]byte, bool, error) {
				r, err := decodeRecord(old)
				if err != nil {
					r = tokenRecord{} // unreadable: start over
				}
				r.New = slot
				b, err := json.Marshal(r)
				return b, false, err
			})
	}
	err := write()
	if errors.Is(err, storage.ErrQuotaExceeded) {
		if a.pruneFASTTokens(ctx, owner) > 0 {
			err = write()
		}
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: storing a FAST token: %w", err)
	}
	return string(a.tokenFor(owner, key, slot)), time.Unix(slot.Expires, 0).UTC(), nil
}

// pruneFASTTokens deletes the owner's entries without a live token and
// returns how many.
func (a *Authenticator) pruneFASTTokens(ctx context.Context, owner string) int {
	keys, err := a.tokens.Keys(ctx, owner)
	if err != nil {
		return 0
	}
	n := 0
	now := a.clock.Now()
	for _, k := range keys {
		e, err := a.tokens.Get(ctx, owner, k)
		if err != nil {
			continue
		}
		if r, err := decodeRecord(e.Value); err == nil && r.live(now) {
			continue
		}
		if a.tokens.Delete(ctx, owner, k) == nil {
			n++
		}
	}
	return n
}

// RevokeFASTTokens ends every FAST token of an account (bare JID), as a
// password change does.
func RevokeFASTTokens(ctx context.Context, kv storage.KeyValue, bare string) error {
	keys, err := kv.Keys(ctx, bare)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := kv.Delete(ctx, bare, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}

// tokenOutcome is what checking a FAST login found.
type tokenOutcome int

const (
	tokenWrong   tokenOutcome = iota // no token of this client matches
	tokenExpired                     // a token matched but has expired
	tokenReplay                      // a token matched with a count already processed
	tokenOK
)

// useToken checks a login with a token and records its use (slot move,
// count, invalidation) with a compare-and-set. It returns the token (for
// the server's answer) and whether it is due for rotation.
func (a *Authenticator) useToken(ctx context.Context, owner, userAgent string, m htMechanism, mac, cb []byte, use *FASTUse) (tokenOutcome, []byte, bool, error) {
	if userAgent == "" {
		return tokenWrong, nil, false, nil
	}
	key := clientKey(userAgent)
	for {
		e, err := a.tokens.Get(ctx, owner, key)
		if errors.Is(err, storage.ErrNotFound) {
			return tokenWrong, nil, false, nil
		}
		if err != nil {
			return tokenWrong, nil, false, err
		}
		r, err := decodeRecord(e.Value)
		if err != nil {
			return tokenWrong, nil, false, nil
		}
		var slot *tokenSlot
		var token []byte
		fromNew := false
		for i, s := range []*tokenSlot{r.New, r.Cur} {
			if s == nil || s.Mech != m.name {
				continue // a token is bound to the mechanism it was issued for
			}
			t := a.tokenFor(owner, key, s)
			if hmac.Equal(htMAC(m.h, t, "Initiator", cb), mac) {
				slot, token, fromNew = s, t, i == 0
				break
			}
		}
		if slot == nil {
			return tokenWrong, nil, false, nil
		}
		now := a.clock.Now()
		if now.Unix() >= slot.Expires {
			return tokenExpired, nil, false, nil
		}
		if use.HasCount {
			if use.Count <= slot.Count {
				return tokenReplay, nil, false, nil
			}
			slot.Count = use.Count
		}
		if fromNew {
			r.Cur, r.New = slot, nil // the older token ends
		}
		if use.Invalidate {
			r.Cur = nil
		}
		b, err := json.Marshal(r)
		if err != nil {
			return tokenWrong, nil, false, err
		}
		_, err = a.tokens.CompareAndSet(ctx, owner, key, e.Version, b, storage.Limits{})
		if errors.Is(err, storage.ErrConflict) {
			if err := ctx.Err(); err != nil {
				return tokenWrong, nil, false, err
			}
			continue // another login of this client got there first: look again
		}
		if err != nil {
			return tokenWrong, nil, false, err
		}
		rotate := !use.Invalidate && time.Unix(slot.Expires, 0).Sub(now) < a.tokenLifetime/2
		return tokenOK, token, rotate, nil
	}
}

// htExchange is the server side of an HT mechanism.
type htExchange struct {
	a        *Authenticator
	m        htMechanism
	c        Conn
	cb       []byte
	username string
	done     bool
	rotate   bool
}

// FASTLogin is implemented by an exchange that authenticated with a FAST
// token.
type FASTLogin interface {
	Exchange
	// FASTMechanism is the token's mechanism.
	FASTMechanism() string
	// RotationDue reports, after success, that the token is past half its
	// lifetime: the client should get a new one (XEP-0484 §4.5) unless it
	// invalidated this one.
	RotationDue() bool
}

var _ FASTLogin = (*htExchange)(nil)

func (a *Authenticator) startHT(m htMechanism, c Conn) (Exchange, error) {
	switch {
	case a.tokens == nil || c.FAST == nil:
		// HT is for FAST logins only: inside SASL2, with <fast/>.
		return nil, fail(CondInvalidMechanism, errors.New("fast: HT without <fast/>"))
	case !c.Secure:
		return nil, fail(CondEncryptionRequired, nil)
	case m.cb != "" && !c.Bindings.Has(m.cb):
		return nil, fail(CondInvalidMechanism, fmt.Errorf("fast: no %s binding on this stream", m.cb))
	}
	return &htExchange{a: a, m: m, c: c, cb: c.Bindings[m.cb]}, nil
}

func (x *htExchange) Username() string      { return x.username }
func (x *htExchange) FASTMechanism() string { return x.m.name }
func (x *htExchange) RotationDue() bool     { return x.rotate }

func (x *htExchange) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if x.done {
		return nil, false, fail(CondMalformedRequest, errors.New("fast: unexpected step"))
	}
	x.done = true
	name, mac, ok := bytes.Cut(in, []byte{0})
	if !ok || len(name) == 0 || len(mac) == 0 {
		return nil, false, fail(CondMalformedRequest, errors.New("fast: want authcid NUL hashed token"))
	}
	user, err := x.a.normalizeUsername(string(name))
	if err != nil {
		user = string(name)
	}
	if err := x.a.waitAccount(ctx, user, x.c.Addr); err != nil {
		return nil, false, fail(CondTemporaryAuthFailure, err)
	}
	outcome, token, rotate, err := x.a.useToken(ctx, user+"@"+x.a.domain, x.c.UserAgent, x.m, mac, x.cb, x.c.FAST)
	if err != nil {
		return nil, false, fail(CondTemporaryAuthFailure, err)
	}
	switch outcome {
	case tokenExpired:
		return nil, false, fail(CondCredentialsExpired, errors.New("fast: token expired"))
	case tokenReplay:
		x.a.accountFailed(user)
		return nil, false, fail(CondNotAuthorized, errors.New("fast: count already processed"))
	case tokenWrong:
		x.a.accountFailed(user)
		return nil, false, fail(CondNotAuthorized, errors.New("fast: no matching token"))
	}
	x.a.accountSucceeded(user)
	x.username, x.rotate = user, rotate
	return htMAC(x.m.h, token, "Responder", x.cb), true, nil
}
