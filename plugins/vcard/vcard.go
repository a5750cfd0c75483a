// Package vcard is XEP-0054 vcard-temp, stored by the server.
//
// A get with no 'to' (or to the user's own bare JID) returns the user's own
// vCard; a get to another local user's bare JID returns theirs, to any
// requester (vCards are public). Following XEP-0054 §3.1, a user without a
// stored vCard gets item-not-found, and a JID with no account gets
// service-unavailable (RFC 6121 §8.5.1). A get to the domain itself gets
// item-not-found: the server has no vCard.
//
// A set stores the vCard and is allowed only on the sender's own account;
// a set on anyone else's gets forbidden.
//
// A set is announced on the hook bus (plugins.EventXMLStored) before it
// is answered: PEP converts the PHOTO to the XEP-0084 avatar and the rest
// to the XEP-0292 vCard4 node (XEP-0398), and writes back here, through
// Save, what clients publish there.
//
// XEP-0153 in presence (photo.go): the server puts the SHA-1 of the
// user's vCard PHOTO in every available presence its users send
// (<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>, or an empty
// <photo/> when there is none), as XEP-0398 §4 asks, unless the client
// sent a <photo/> itself; a client's <x/> without <photo/> is filled in.
//
// Storage: the key/value store "vcard" (storage.Modules), one entry per
// account under its bare JID, key "", and the photo's hash under the key
// "photo-hash" (written with the vCard by Save; for a vCard stored
// before hashes were kept, computed and stored the first time presence
// needs it).
package vcard

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0054.vcard"

// NS is the vcard-temp namespace.
const NS = "vcard-temp"

// Store is the key/value store the vCards live in (schema migration 2
// moved them there; keep the name).
const Store = "vcard"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin stores and serves vCards.
type Plugin struct{ host plugins.Host }

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.DiscoFeatures   = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
	_ plugins.Interceptor     = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }
func (p *Plugin) AccountFeatures() []string      { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	payload := iq.Payload()
	if payload.Name != "vCard" {
		return nil, wire.ErrBadRequest
	}
	to := iq.Stanza.To()
	if to != "" && wire.JIDOf(to).String() == p.host.Domain() {
		if iq.Stanza.Type() == "set" {
			return nil, wire.ErrForbidden
		}
		return nil, wire.ErrItemNotFound
	}
	self, isSelf := xmpputil.Self(iq)
	switch iq.Stanza.Type() {
	case "set":
		if !isSelf {
			return nil, wire.ErrForbidden
		}
		v := payload.Copy()
		v.Tail = ""
		if err := Save(ctx, p.host.Store(), self, v); err != nil {
			return nil, err
		}
		if err := p.host.Hooks().Run(ctx, plugins.EventXMLStored, &plugins.XMLStoredEvent{Owner: self, Plugin: ID, El: v}); err != nil {
			p.host.Logger().Warn("vcard: a hook on the stored vCard failed", "owner", self, "err", err)
		}
		return nil, nil
	case "get":
		owner := self
		if !isSelf {
			j, err := wire.ParseJID(to)
			if err != nil || j.Local() == "" || j.Domain() != p.host.Domain() {
				return nil, wire.ErrServiceUnavailable
			}
			if _, err := p.host.Store().GetUser(ctx, j.Local()); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					return nil, wire.ErrServiceUnavailable
				}
				return nil, err
			}
			owner = j.Bare()
		}
		v, err := Load(ctx, p.host.Store(), owner)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, wire.ErrItemNotFound
		}
		return v, nil
	}
	return nil, wire.ErrBadRequest
}
