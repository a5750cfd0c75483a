// Package register is XEP-0077 in-band registration.
//
// Creating accounts is off by default and on with c2s.allow_registration
// (flag --allow-registration). When on, the stream feature
// <register xmlns='http://jabber.org/features/iq-register'/> is offered
// before authentication, and the stream layer passes jabber:iq:register
// IQs from unauthenticated streams to plugins.Manager.HandlePreAuthIQ,
// which lands in HandlePreAuthIQ here: a get returns the form (username,
// password), a set creates the account. A taken username gets conflict; a
// missing or empty field, or a username that is not a valid localpart,
// gets not-acceptable with the form as payload. With registration off,
// pre-auth IQs get service-unavailable.
//
// Registration attempts are limited per client address
// (c2s.registration_limit per hour, per node): past it a set gets
// resource-constraint (type wait) with a text saying when to try again, as
// ejabberd answers "too quickly". Without it one address created 904
// accounts per second.
//
// On an authenticated stream (always on, whatever the switch): a get
// returns <registered/> and the username; a set with username and password
// changes the password (the username must be the sender's own); a set with
// <remove/> deletes the account through Host.Users().DeleteUser, sends the
// result, then closes every session of the account.
//
// Every account change goes through Host.Users(), so hashing lives in one
// place. Data forms (XEP-0004) registration is not offered.
package register

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0077.register"

// Namespaces.
const (
	NS        = "jabber:iq:register"
	NSFeature = "http://jabber.org/features/iq-register"
)

// Instructions is the text of the registration form.
const Instructions = "Choose a username and password to register with this server."

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin handles registration, password change and account removal.
type Plugin struct {
	host  plugins.Host
	limit addrLimiter
	now   func() time.Time // tests move it
}

var (
	_ plugins.IQHandler        = (*Plugin)(nil)
	_ plugins.PreAuthIQHandler = (*Plugin)(nil)
	_ plugins.StreamFeatures   = (*Plugin)(nil)
	_ plugins.DiscoFeatures    = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{now: time.Now} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }
func (p *Plugin) PreAuthNamespaces() []string    { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

func (p *Plugin) open() bool { return p.host.Config().C2S.AllowRegistration }

// StreamFeatures offers registration before authentication when it is on.
func (p *Plugin) StreamFeatures(authenticated bool) []*wire.Element {
	if authenticated || !p.open() {
		return nil
	}
	return []*wire.Element{wire.NewNS("register", NSFeature)}
}

// Form returns the registration form.
func Form() *wire.Element {
	return wire.NewNS("query", NS).Append(
		wire.New("instructions").SetText(Instructions),
		wire.New("username"),
		wire.New("password"),
	)
}

// failWithForm makes the error reply carry the form instead of the
// request: the manager's error reply repeats the request's payload.
func failWithForm(iq *plugins.IQ, se *wire.StanzaError) error {
	iq.Stanza.Children = []*wire.Element{Form()}
	return se
}

// HandlePreAuthIQ creates accounts on unauthenticated streams.
func (p *Plugin) HandlePreAuthIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if !p.open() {
		return nil, wire.ErrServiceUnavailable
	}
	q := iq.Payload()
	if q.Name != "query" {
		return nil, wire.ErrBadRequest
	}
	switch iq.Stanza.Type() {
	case "get":
		return Form(), nil
	case "set":
		if q.Child("remove", "") != nil {
			return nil, wire.ErrNotAuthorized
		}
		if se := p.limited(iq.RemoteAddr); se != nil {
			return nil, se
		}
		username, password := q.ChildText("username", ""), q.ChildText("password", "")
		if username == "" || password == "" {
			return nil, failWithForm(iq, wire.ErrNotAcceptable)
		}
		j, err := wire.NewJID(username, p.host.Domain(), "")
		if err != nil {
			return nil, failWithForm(iq, wire.ErrNotAcceptable)
		}
		if err := xmpputil.CreateUser(ctx, p.host, j.Local(), password); err != nil {
			if err == wire.ErrNotAcceptable {
				return nil, failWithForm(iq, wire.ErrNotAcceptable)
			}
			return nil, err
		}
		p.host.Logger().Info("account registered in-band", "user", j.Local())
		return nil, nil
	}
	return nil, wire.ErrBadRequest
}

// limited counts a registration attempt from addr and returns the error
// for one past c2s.registration_limit (-1: no limit; 0 only where the
// defaults were not applied, also no limit).
func (p *Plugin) limited(addr string) *wire.StanzaError {
	limit := p.host.Config().C2S.RegistrationLimit
	if limit <= 0 {
		return nil
	}
	ok, wait := p.limit.allow(addr, limit, p.now())
	if ok {
		return nil
	}
	p.host.Logger().Info("in-band registration refused: too many from one address", "addr", addr, "limit", limit)
	return wire.ErrResourceConstraint.WithText(fmt.Sprintf(
		"Too many registrations from your address (at most %d per hour); try again in %d minutes.",
		limit, int(wait.Minutes())+1))
}

// HandleIQ handles registration IQs from authenticated users.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	from, err := wire.ParseJID(iq.From)
	if err != nil || !iq.FromLocal || from.Local() == "" || from.Domain() != p.host.Domain() {
		return nil, wire.ErrNotAllowed
	}
	if to := iq.Stanza.To(); to != "" && to != p.host.Domain() {
		return nil, wire.ErrNotAllowed
	}
	me := from.Local()
	q := iq.Payload()
	if q.Name != "query" {
		return nil, wire.ErrBadRequest
	}
	switch iq.Stanza.Type() {
	case "get":
		return wire.NewNS("query", NS).Append(
			wire.New("registered"),
			wire.New("username").SetText(me),
			wire.New("password"),
		), nil
	case "set":
		if q.Child("remove", "") != nil {
			return p.remove(ctx, iq, from)
		}
		username, password := q.ChildText("username", ""), q.ChildText("password", "")
		if username == "" || password == "" {
			return nil, failWithForm(iq, wire.ErrNotAcceptable)
		}
		if j, err := wire.NewJID(username, p.host.Domain(), ""); err != nil || j.Local() != me {
			return nil, wire.ErrNotAllowed
		}
		if err := p.host.Users().SetPassword(ctx, me, password); err != nil {
			return nil, err
		}
		p.host.Logger().Info("password changed in-band", "user", me)
		return nil, nil
	}
	return nil, wire.ErrBadRequest
}

// remove deletes the account. The result must reach the client before its
// streams close (XEP-0077 §3.2) and the user manager closes them as part
// of the deletion, so the result is routed here first; the copy the
// manager then builds finds the session closed and is dropped like any IQ
// result to a gone resource. Should the deletion itself then fail, the
// client gets that error after the result.
func (p *Plugin) remove(ctx context.Context, iq *plugins.IQ, from wire.JID) (*wire.Element, error) {
	user := from.Local()
	if _, err := p.host.Store().GetUser(ctx, user); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, wire.ErrItemNotFound
		}
		return nil, err
	}
	p.host.Route(ctx, wire.IQResult(iq.Stanza, nil))
	if err := p.host.Users().DeleteUser(ctx, user); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, wire.ErrItemNotFound
		}
		return nil, err
	}
	p.host.Logger().Info("account removed in-band", "user", user)
	p.host.Users().Kick(ctx, from.Bare(), "account removed")
	return nil, nil
}
