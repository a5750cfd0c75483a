package auth

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"

	"github.com/aviary-im/aviary/storage"
)

// plainExchange is SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
// It is only started on encrypted streams.
type plainExchange struct {
	a        *Authenticator
	addr     string // the client's address, for the account throttle
	username string
	done     bool
}

func (x *plainExchange) Username() string { return x.username }

func (x *plainExchange) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if x.done {
		return nil, false, fail(CondMalformedRequest, errors.New("plain: unexpected step"))
	}
	x.done = true
	if len(in) == 0 {
		// No initial response: ask for it with an empty challenge.
		x.done = false
		return []byte{}, false, nil
	}
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, false, fail(CondMalformedRequest, errors.New("plain: want authzid\\0authcid\\0passwd"))
	}
	name, authzid, password := string(parts[1]), string(parts[0]), string(parts[2])
	user, nerr := x.a.normalizeUsername(name)
	if nerr != nil {
		user = name
	}
	if authzid != "" && !x.a.authzidMatches(authzid, user) {
		return nil, false, fail(CondInvalidAuthzid, nil)
	}
	if err := x.a.waitAccount(ctx, user, x.addr); err != nil {
		return nil, false, fail(CondTemporaryAuthFailure, err)
	}
	ok, locked, err := x.a.checkUserPassword(ctx, user, password, nerr == nil)
	if err != nil {
		return nil, false, fail(CondTemporaryAuthFailure, err)
	}
	if !ok {
		x.a.accountFailed(user)
		return nil, false, fail(CondNotAuthorized, errors.New("plain: wrong password or unknown user"))
	}
	x.a.accountSucceeded(user)
	x.username = user
	if locked {
		return nil, false, fail(CondAccountDisabled, errLocked)
	}
	return nil, true, nil
}

// checkUserPassword verifies a password, doing the same PBKDF2 work for an
// unknown user as for a known one. locked reports, for the right password
// only, that an administrator locked the account.
func (a *Authenticator) checkUserPassword(ctx context.Context, user, password string, valid bool) (ok, locked bool, err error) {
	var u storage.User
	err = storage.ErrNotFound
	if valid {
		u, err = a.store.GetUser(ctx, user)
	}
	switch {
	case err == nil:
		if len(u.Credentials.SHA256.Salt) > 0 {
			ok = checkPassword(sha256.New, u.Credentials.SHA256, password)
		} else {
			ok = checkPassword(sha1.New, u.Credentials.SHA1, password)
		}
		return ok, ok && u.Locked(), nil
	case errors.Is(err, storage.ErrNotFound):
		_ = checkPassword(sha256.New, a.fakeCredential(false, user), password)
		return false, false, nil
	}
	return false, false, err
}
