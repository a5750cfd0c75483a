package plugins

import (
	"context"
	"sort"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// This file extends the plugin API additively for the built-in plugins:
// disco identities, items and nodes (XEP-0030), IQs on unauthenticated
// streams (XEP-0077 registration) and per-plugin settings.

// Identity is one XEP-0030 identity.
type Identity struct {
	Category, Type, Name string
}

// DiscoItem is one XEP-0030 item.
type DiscoItem struct {
	JID, Node, Name string
}

// DiscoIdentities contributes identities to the server's disco#info
// (besides the server/im identity the disco plugin always reports).
type DiscoIdentities interface {
	Plugin
	DiscoIdentities() []Identity
}

// AccountIdentities contributes identities to disco#info on a local
// user's bare JID, besides account/registered (XEP-0163 PEP adds
// pubsub/pep).
type AccountIdentities interface {
	Plugin
	AccountIdentities() []Identity
}

// AccountNodes answers disco#info on nodes of a local user's bare JID
// (XEP-0163 PEP nodes). ok is false when the plugin does not know the
// node; a node nobody knows gets item-not-found.
type AccountNodes interface {
	Plugin
	AccountNodeInfo(ctx context.Context, from, account, node string) (ids []Identity, features []string, ok bool)
}

// AccountItems answers disco#items on a local user's bare JID (node
// "": XEP-0163 PEP nodes) or on a node of it (XEP-0060 §5.5: the node's
// items). ok is false when the plugin does not know the node; a node
// nobody knows gets item-not-found, and the account's own list is empty.
type AccountItems interface {
	Plugin
	AccountItems(ctx context.Context, from, account, node string) (items []DiscoItem, ok bool)
}

// DiscoItems contributes items (services, usually) to the server's
// disco#items without a node. from is the requester's JID.
type DiscoItems interface {
	Plugin
	DiscoItems(ctx context.Context, from string) []DiscoItem
}

// DiscoNodes answers disco#info and disco#items on nodes of the server
// (XEP-0050 puts its command list under a node, for example). ok is false
// when the plugin does not own the node; a node nobody owns gets
// item-not-found.
type DiscoNodes interface {
	Plugin
	DiscoNodeInfo(ctx context.Context, from, node string) (ids []Identity, features []string, ok bool)
	DiscoNodeItems(ctx context.Context, from, node string) (items []DiscoItem, ok bool)
}

// ManagerAware plugins receive the Manager that runs them, before Start.
// The disco plugin uses it to list every other plugin's features.
type ManagerAware interface {
	Plugin
	SetManager(m *Manager)
}

// PreAuthIQHandler answers IQs on a stream that has not authenticated yet
// (XEP-0077 in-band registration is the only user today). The IQ has no
// From; iq.To is the domain.
type PreAuthIQHandler interface {
	Plugin
	// PreAuthNamespaces lists the payload namespaces accepted before auth.
	PreAuthNamespaces() []string
	// HandlePreAuthIQ returns the result payload (nil for an empty result)
	// or an error, like IQHandler.HandleIQ.
	HandlePreAuthIQ(ctx context.Context, iq *IQ) (*wire.Element, error)
}

// Identities returns every plugin's identities (without duplicates).
func (m *Manager) Identities() []Identity {
	var out []Identity
	seen := map[Identity]bool{}
	for _, p := range m.list() {
		if di, ok := p.(DiscoIdentities); ok {
			for _, id := range di.DiscoIdentities() {
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// AccountIdentities returns every plugin's account identities (without
// duplicates).
func (m *Manager) AccountIdentities() []Identity {
	var out []Identity
	seen := map[Identity]bool{}
	for _, p := range m.list() {
		if ai, ok := p.(AccountIdentities); ok {
			for _, id := range ai.AccountIdentities() {
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// AccountNodeInfo asks the plugins for disco#info on a node of an account.
func (m *Manager) AccountNodeInfo(ctx context.Context, from, account, node string) ([]Identity, []string, bool) {
	for _, p := range m.list() {
		if an, ok := p.(AccountNodes); ok {
			if ids, feats, ok := an.AccountNodeInfo(ctx, from, account, node); ok {
				return ids, feats, true
			}
		}
	}
	return nil, nil, false
}

// AccountItems asks the plugins for disco#items on an account or one of
// its nodes: every plugin's items for the account itself, the knowing
// plugin's for a node (ok false when none knows it).
func (m *Manager) AccountItems(ctx context.Context, from, account, node string) ([]DiscoItem, bool) {
	var out []DiscoItem
	found := false
	for _, p := range m.list() {
		if ai, ok := p.(AccountItems); ok {
			if items, ok := ai.AccountItems(ctx, from, account, node); ok {
				if node != "" {
					return items, true
				}
				out = append(out, items...)
				found = true
			}
		}
	}
	return out, found || node == ""
}

// DiscoItems returns every plugin's items for the server's disco#items.
func (m *Manager) DiscoItems(ctx context.Context, from string) []DiscoItem {
	var out []DiscoItem
	for _, p := range m.list() {
		if di, ok := p.(DiscoItems); ok {
			out = append(out, di.DiscoItems(ctx, from)...)
		}
	}
	return out
}

// DiscoNodeInfo asks the plugins for disco#info on a node of the server.
func (m *Manager) DiscoNodeInfo(ctx context.Context, from, node string) ([]Identity, []string, bool) {
	for _, p := range m.list() {
		if dn, ok := p.(DiscoNodes); ok {
			if ids, feats, ok := dn.DiscoNodeInfo(ctx, from, node); ok {
				return ids, feats, true
			}
		}
	}
	return nil, nil, false
}

// DiscoNodeItems asks the plugins for disco#items on a node of the server.
func (m *Manager) DiscoNodeItems(ctx context.Context, from, node string) ([]DiscoItem, bool) {
	for _, p := range m.list() {
		if dn, ok := p.(DiscoNodes); ok {
			if items, ok := dn.DiscoNodeItems(ctx, from, node); ok {
				return items, true
			}
		}
	}
	return nil, false
}

// HandlePreAuthIQ answers an IQ that arrived on a stream before SASL
// succeeded. The stream layer (server/c2s) calls it for every IQ get/set
// it receives before authentication; handled is false when no plugin
// accepts the namespace, and the stream layer then answers as RFC 6120
// says for an unauthenticated stream (not-authorized, or service-unavailable).
//
// The reply carries no 'to' or 'from' (the stream has no JID yet); the
// stream layer writes it to the stream as is. remoteAddr is the client's
// IP address (for limits per address). Today only XEP-0077 registration
// (jabber:iq:register) is accepted, and only when c2s.allow_registration
// is on.
func (m *Manager) HandlePreAuthIQ(ctx context.Context, el *wire.Element, remoteAddr string) (reply *wire.Element, handled bool) {
	if el == nil || el.Name != "iq" || (el.Type() != "get" && el.Type() != "set") {
		return nil, false
	}
	payload := el.FirstChild()
	if payload == nil {
		return nil, false
	}
	ns := payload.NS()
	for _, p := range m.list() {
		h, ok := p.(PreAuthIQHandler)
		if !ok {
			continue
		}
		for _, want := range h.PreAuthNamespaces() {
			if want != ns {
				continue
			}
			iq := &IQ{Stanza: el, To: m.host.Domain(), RemoteAddr: remoteAddr}
			res, err := h.HandlePreAuthIQ(ctx, iq)
			if err != nil {
				se, ok := err.(*wire.StanzaError)
				if !ok {
					m.log.Error("plugin pre-auth IQ handler failed", "plugin", p.ID(), "ns", ns, "err", err)
					se = wire.ErrInternalServerError
				}
				r := wire.ErrorReply(el, se)
				r.RemoveAttr("from").RemoveAttr("to")
				return r, true
			}
			r := wire.IQResult(el, res)
			r.RemoveAttr("from").RemoveAttr("to")
			return r, true
		}
	}
	return nil, false
}

// Plugins returns the running plugins, in start order.
func (m *Manager) Plugins() []Plugin {
	return append([]Plugin(nil), m.list()...)
}

// SortedUnique returns the strings sorted with duplicates removed; disco
// answers must not repeat a feature (XEP-0115 hashes them).
func SortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	n := 0
	for i, s := range out {
		if s == "" || (i > 0 && s == out[i-1]) {
			continue
		}
		out[n] = s
		n++
	}
	return out[:n]
}

// Setting returns a plugin's setting from conf plugins.settings[id][key].
func Setting(cfg *conf.Config, id, key string) (any, bool) {
	if cfg == nil || cfg.Plugins.Settings == nil {
		return nil, false
	}
	v, ok := cfg.Plugins.Settings[id][key]
	return v, ok
}

// SettingBool returns a boolean setting, or def when unset or not a bool.
func SettingBool(cfg *conf.Config, id, key string, def bool) bool {
	if v, ok := Setting(cfg, id, key); ok {
		if b, ok := v.(bool); ok {
			return b
		}
	}
	return def
}

// SettingInt returns a whole-number setting, or def when unset or not a
// whole number.
func SettingInt(cfg *conf.Config, id, key string, def int) int {
	if v, ok := Setting(cfg, id, key); ok {
		if n, ok := v.(int); ok {
			return n
		}
	}
	return def
}

// SettingString returns a string setting, or def when unset or not a string.
func SettingString(cfg *conf.Config, id, key, def string) string {
	if v, ok := Setting(cfg, id, key); ok {
		if s, ok := v.(string); ok {
			return s
		}
	}
	return def
}
