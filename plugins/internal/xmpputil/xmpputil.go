// Package xmpputil holds the small helpers the built-in plugins share:
// "whose account does this IQ address" (JIDs themselves are wire.JID).
package xmpputil

import (
	"context"
	"errors"
	"fmt"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Domain returns the domain of a JID ("" when invalid).
func Domain(s string) string { return wire.JIDOf(s).Domain() }

// Requester returns the bare JID of the IQ's sender.
func Requester(iq *plugins.IQ) string { return wire.JIDOf(iq.From).Bare() }

// Self reports whether the IQ addresses its sender's own account: a local
// user who sent it with no 'to', or to their own bare JID. It returns the
// account's bare JID.
func Self(iq *plugins.IQ) (string, bool) {
	if !iq.FromLocal {
		return "", false
	}
	me := wire.JIDOf(iq.From).Bare()
	if me == "" {
		return "", false
	}
	to := iq.Stanza.To()
	if to == "" || wire.JIDOf(to).Bare() == me {
		return me, true
	}
	return me, false
}

// Target returns the account an IQ addresses: the sender's own account when
// the IQ has no 'to', else the bare JID in 'to'.
func Target(iq *plugins.IQ) string {
	if iq.Stanza.To() == "" {
		return wire.JIDOf(iq.From).Bare()
	}
	return wire.JIDOf(iq.Stanza.To()).Bare()
}

// CreateUser creates an account through Host.Users() and maps failures to
// stanza errors: a taken name is conflict (checked in the store first, as
// user managers need not wrap storage.ErrExists), an unreachable database
// internal-server-error, anything else (a username or password the user
// manager refuses) not-acceptable.
func CreateUser(ctx context.Context, host plugins.Host, username, password string) error {
	if _, err := host.Store().GetUser(ctx, username); err == nil {
		return wire.ErrConflict
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	err := host.Users().CreateUser(ctx, username, password)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrExists):
		return wire.ErrConflict
	case errors.Is(err, storage.ErrUnavailable):
		return err
	}
	if _, gerr := host.Store().GetUser(ctx, username); gerr == nil {
		return wire.ErrConflict // lost a race with another registration
	}
	host.Logger().Info("account refused", "user", username, "err", err)
	return wire.ErrNotAcceptable
}

// QuotaError turns a store's quota error into the stanza error the client
// gets: not-acceptable (modify: the client must store less, waiting will
// not help) with a text saying which limit of what, e.g. "private XML
// storage is full: at most 100 fragments per account" (items names the
// store's items). Other errors pass through.
func QuotaError(err error, what, items string) error {
	return QuotaErrorPer(err, what, items, "account")
}

// QuotaErrorPer is QuotaError for a quota counted per something else
// than an account ("node").
func QuotaErrorPer(err error, what, items, per string) error {
	var qe *storage.QuotaError
	if !errors.As(err, &qe) {
		return err
	}
	unit := qe.Limit
	if unit == "items" {
		unit = items
	}
	return wire.ErrNotAcceptable.WithText(fmt.Sprintf("%s is full: at most %d %s per %s", what, qe.Max, unit, per))
}

// Limits reads a plugin's storage quota settings: the whole numbers
// items and bytes, 0 meaning no limit.
func Limits(cfg *conf.Config, id, itemsKey string, defItems int, bytesKey string, defBytes int) storage.Limits {
	return storage.Limits{
		Items: plugins.SettingInt(cfg, id, itemsKey, defItems),
		Bytes: int64(plugins.SettingInt(cfg, id, bytesKey, defBytes)),
	}
}
