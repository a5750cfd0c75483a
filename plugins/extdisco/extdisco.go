// Package extdisco is XEP-0215 external service discovery: it tells a
// client which STUN and TURN servers to use for audio and video calls
// behind NAT, with short-lived TURN credentials.
//
// The servers come from external_services in the configuration (every
// node has the same list, so any node answers). IQs to the domain, from
// local users only (the credentials are for our users, not for anyone
// who can reach the domain over s2s):
//   - get <services xmlns='urn:xmpp:extdisco:2' [type='turn']/>: every
//     service (of that type), a TURN service with username, password,
//     expires and restricted='1';
//   - get <credentials xmlns='urn:xmpp:extdisco:2'><service host='H'
//     type='turn' [port='P']/></credentials>: fresh credentials for that
//     service, item-not-found when none matches.
//
// Both in urn:xmpp:extdisco:2 and in the older urn:xmpp:extdisco:1, whose
// requests and answers have the same shape (Conversations and Dino ask
// :2, older Jitsi builds :1).
//
// Credentials follow the TURN REST API (draft-uberti-behave-turn-rest),
// which coturn's use-auth-secret and eturnal check without asking us:
// username "<expiry in Unix seconds>:<bare JID>" (a bare JID holds no
// ':' in its localpart, RFC 7622, so the server finds the expiry), and
// password base64(HMAC-SHA1(secret, username)). A service with a static
// username and password in the configuration gets those instead.
package extdisco

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0215.extdisco"

// The two namespaces answered.
const (
	NS  = "urn:xmpp:extdisco:2"
	NS1 = "urn:xmpp:extdisco:1"
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin answers external service discovery.
type Plugin struct {
	// Now is the clock credentials expire by (tests set it).
	Now func() time.Time

	cfg conf.ExternalServicesConfig
}

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{Now: time.Now} }

func (p *Plugin) ID() string { return ID }

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.cfg = host.Config().ExternalServices
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error { return nil }

// DiscoFeatures advertises the namespaces only when there is something to
// discover.
func (p *Plugin) DiscoFeatures() []string {
	if len(p.cfg.Services) == 0 {
		return nil
	}
	return []string{NS, NS1}
}

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer, NS1: plugins.ToServer}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	q := iq.Payload()
	if iq.Stanza.Type() != "get" {
		return nil, wire.ErrBadRequest
	}
	if !iq.FromLocal {
		return nil, wire.ErrForbidden
	}
	if len(p.cfg.Services) == 0 {
		return nil, wire.ErrServiceUnavailable
	}
	user := wire.JIDOf(iq.From).Bare()
	ns := q.NS()
	switch q.Name {
	case "services":
		res := wire.NewNS("services", ns)
		for _, s := range p.cfg.Services {
			if t := q.Attr("type"); t == "" || t == s.Type {
				res.Append(p.service(s, user))
			}
		}
		return res, nil
	case "credentials":
		want := q.Child("service", "")
		if want == nil || want.Attr("host") == "" {
			return nil, wire.ErrBadRequest
		}
		for _, s := range p.cfg.Services {
			if s.Host != want.Attr("host") || (want.Attr("type") != "" && want.Attr("type") != s.Type) ||
				(want.Attr("port") != "" && want.Attr("port") != strconv.Itoa(s.Port)) || !restricted(s) {
				continue
			}
			return wire.NewNS("credentials", ns).Append(p.service(s, user)), nil
		}
		return nil, wire.ErrItemNotFound
	}
	return nil, wire.ErrBadRequest
}

// restricted reports whether a service takes credentials.
func restricted(s conf.ExternalService) bool { return s.Type == "turn" || s.Type == "turns" }

// service describes s to user, with credentials when it takes them.
func (p *Plugin) service(s conf.ExternalService, user string) *wire.Element {
	el := wire.New("service", "type", s.Type, "host", s.Host, "port", strconv.Itoa(s.Port), "transport", s.Transport)
	if s.Name != "" {
		el.SetAttr("name", s.Name)
	}
	if !restricted(s) {
		return el
	}
	el.SetAttr("restricted", "1")
	if s.Username != "" {
		return el.SetAttr("username", s.Username).SetAttr("password", s.Password)
	}
	expires := p.Now().Add(p.cfg.CredentialTTL).Truncate(time.Second)
	username, password := Credentials(p.cfg.Secret, user, expires)
	return el.SetAttr("username", username).SetAttr("password", password).
		SetAttr("expires", expires.UTC().Format(time.RFC3339))
}

// Credentials returns TURN REST API credentials for user that a TURN
// server sharing secret accepts until expires.
func Credentials(secret, user string, expires time.Time) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
