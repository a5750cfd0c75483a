// Package private is XEP-0049 private XML storage: a user stores XML
// fragments on the server, keyed by element name and namespace, and reads
// them back. Only the user's own account can be read or written (no 'to',
// or 'to' the user's own bare JID); anything else gets forbidden.
//
// A set may carry several fragments and stores each. A get returns each
// requested fragment, or the requested element itself (empty) when nothing
// is stored under it. Fragments in the jabber:client, jabber:server or
// jabber:iq:private namespaces (or with no namespace of their own), and a
// query with no fragment, get not-acceptable.
package private

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0049.private"

// NS is the private storage namespace.
const NS = "jabber:iq:private"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin stores private XML.
type Plugin struct{ host plugins.Host }

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

// Key returns the storage key of a fragment: "name namespace".
func Key(el *wire.Element) string { return el.LocalName() + " " + el.NS() }

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner, ok := xmpputil.Self(iq)
	if !ok {
		return nil, wire.ErrForbidden
	}
	q := iq.Payload()
	if q.Name != "query" || len(q.Children) == 0 {
		return nil, wire.ErrNotAcceptable
	}
	for _, c := range q.Children {
		switch c.NS() {
		case "", wire.NSClient, wire.NSServer, NS:
			return nil, wire.ErrNotAcceptable
		}
	}
	st := p.host.Store()
	switch iq.Stanza.Type() {
	case "set":
		for _, c := range q.Children {
			frag := c.Copy()
			frag.Tail = ""
			if err := st.SetPrivate(ctx, owner, Key(c), frag.Bytes()); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "get":
		res := wire.NewNS("query", NS)
		for _, c := range q.Children {
			data, err := st.GetPrivate(ctx, owner, Key(c))
			if errors.Is(err, storage.ErrNotFound) {
				empty := wire.New(c.Name)
				empty.Attrs = append(empty.Attrs, c.Attrs...)
				res.Append(empty)
				continue
			}
			if err != nil {
				return nil, err
			}
			frag, err := wire.Parse(data, wire.Limits{MaxStanzaBytes: len(data) + 1})
			if err != nil {
				return nil, err
			}
			res.Append(frag)
		}
		return res, nil
	}
	return nil, wire.ErrBadRequest
}
