package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
)

// Users implements plugins.UserManager on a store: the one place accounts
// are created and passwords hashed, shared by `aviary user`, in-band
// registration and the admin API.
type Users struct {
	Store      storage.Users
	Domain     string
	Iterations int
	// KickFunc closes a user's sessions; nil when no server runs (CLI).
	KickFunc func(ctx context.Context, bare, reason string) int
	// Hooks, when set, receives EventUserCreated and EventUserDeleted.
	Hooks *plugins.Hooks
	// FASTTokens, when set, is the store of XEP-0484 tokens: a password
	// change revokes the account's tokens (fast.go).
	FASTTokens storage.KeyValue
}

var _ plugins.UserManager = (*Users)(nil)

// CreateUser adds an account. It returns ErrUserExists when taken and
// ErrBadUsername for an invalid localpart.
func (u *Users) CreateUser(ctx context.Context, username, password string) error {
	name, creds, err := u.credentials(username, password)
	if err != nil {
		return err
	}
	err = u.Store.CreateUser(ctx, storage.User{Username: name, Credentials: creds, CreatedAt: time.Now().UTC()})
	if errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("%w: %s", ErrUserExists, name)
	}
	if err != nil {
		return err
	}
	if u.Hooks != nil {
		_ = u.Hooks.Run(ctx, plugins.EventUserCreated, &plugins.UserEvent{Username: name})
	}
	return nil
}

// DeleteUser removes an account and everything stored for it, then closes
// its sessions. storage.ErrNotFound when there is no such account.
func (u *Users) DeleteUser(ctx context.Context, username string) error {
	name, err := NormalizeUsername(username, u.Domain)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBadUsername, username)
	}
	if _, err := u.Store.GetUser(ctx, name); err != nil {
		return err
	}
	if err := u.Store.DeleteUser(ctx, name); err != nil {
		return err
	}
	if u.Hooks != nil {
		_ = u.Hooks.Run(ctx, plugins.EventUserDeleted, &plugins.UserEvent{Username: name})
	}
	u.Kick(ctx, name+"@"+u.Domain, "account deleted")
	return nil
}

// credentials normalizes username and derives the stored credentials of
// password.
func (u *Users) credentials(username, password string) (string, storage.Credentials, error) {
	name, err := NormalizeUsername(username, u.Domain)
	if err != nil {
		return "", storage.Credentials{}, fmt.Errorf("%w: %q", ErrBadUsername, username)
	}
	creds, err := NewCredentials(password, u.iterations())
	return name, creds, err
}

// SetPassword replaces an account's credentials.
func (u *Users) SetPassword(ctx context.Context, username, password string) error {
	name, creds, err := u.credentials(username, password)
	if err != nil {
		return err
	}
	if err := u.Store.SetCredentials(ctx, name, creds); err != nil {
		return err
	}
	// Whoever changes a password may suspect it leaked: the clients that
	// hold tokens log in with the new password again.
	if u.FASTTokens != nil {
		if err := RevokeFASTTokens(ctx, u.FASTTokens, name+"@"+u.Domain); err != nil {
			return fmt.Errorf("auth: password changed, but revoking FAST tokens failed: %w", err)
		}
	}
	return nil
}

// SetLocked locks or unlocks an account. A locked account keeps its data
// but cannot log in: SASL answers <account-disabled/> to whoever proves
// its password (on every node: the lock is in the store), console
// sign-ins are refused, locking revokes its FAST tokens and closes its
// sessions (KickFunc: on
// every node of the cluster). It returns how many sessions it closed;
// storage.ErrNotFound when there is no such account.
func (u *Users) SetLocked(ctx context.Context, username string, locked bool) (closed int, err error) {
	name, err := NormalizeUsername(username, u.Domain)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadUsername, username)
	}
	var at time.Time
	if locked {
		at = time.Now().UTC()
	}
	if err := u.Store.SetLocked(ctx, name, at); err != nil {
		return 0, err
	}
	if !locked {
		return 0, nil
	}
	// A FAST token would log in without the password check that tells
	// of the lock: the clients holding one fall back to their password.
	if u.FASTTokens != nil {
		if err := RevokeFASTTokens(ctx, u.FASTTokens, name+"@"+u.Domain); err != nil {
			return 0, fmt.Errorf("auth: account locked, but revoking its FAST tokens failed: %w", err)
		}
	}
	return u.Kick(ctx, name+"@"+u.Domain, "account locked by an administrator"), nil
}

// CheckPassword reports whether password is the account's password; a
// locked account's never is.
func (u *Users) CheckPassword(ctx context.Context, username, password string) (bool, error) {
	name, err := NormalizeUsername(username, u.Domain)
	if err != nil {
		return false, nil
	}
	a := &Authenticator{store: u.Store, domain: u.Domain, iterations: u.iterations()}
	ok, locked, err := a.checkUserPassword(ctx, name, password, true)
	return ok && !locked, err
}

// Kick closes every session of a bare JID and returns how many.
func (u *Users) Kick(ctx context.Context, bare, reason string) int {
	if u.KickFunc == nil {
		return 0
	}
	return u.KickFunc(ctx, bare, reason)
}

func (u *Users) iterations() int {
	if u.Iterations <= 0 {
		return 4096
	}
	return u.Iterations
}
