// Package adhoc is XEP-0050 ad-hoc commands on the server, carrying the
// XEP-0133 service administration commands:
//
//	http://jabber.org/protocol/admin#add-user
//	http://jabber.org/protocol/admin#delete-user
//	http://jabber.org/protocol/admin#change-user-password
//	http://jabber.org/protocol/admin#end-user-session
//	http://jabber.org/protocol/admin#get-registered-users-num
//	http://jabber.org/protocol/admin#get-online-users-num
//
// Only administrators (Host.IsAdmin) may list or run them; anyone else does
// not see them and gets forbidden on execute. The forms are the ones
// XEP-0133 specifies (FORM_TYPE http://jabber.org/protocol/admin, field
// names accountjid, accountjids, password, password-verify...), so
// clients such as Smack's ServiceAdministrationManager work unchanged.
//
// Other plugins offer commands to the domain's own users (Provider):
// the message archive's "Delete my message archive"
// (urn:xmpp:mam:2#delete-archive). They are listed, next to the
// administrators' ones, to local users only, and run for the user who
// sends them.
//
// Commands are stateless: the first execute returns the form with a fresh
// sessionid, and any later request that carries a submitted form runs the
// command, whatever its action (execute, complete or next) and sessionid.
// So a command's second stage may land on any node of a cluster. A cancel
// answers status="canceled".
//
// Account changes go through Host.Users(), like `aviary user`.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0050.adhoc"

// Namespaces.
const (
	NS        = "http://jabber.org/protocol/commands"
	NSData    = "jabber:x:data"
	NSAdmin   = "http://jabber.org/protocol/admin"
	adminNode = NSAdmin + "#"
)

// Command nodes.
const (
	NodeAddUser         = adminNode + "add-user"
	NodeDeleteUser      = adminNode + "delete-user"
	NodeChangePassword  = adminNode + "change-user-password"
	NodeEndUserSession  = adminNode + "end-user-session"
	NodeRegisteredUsers = adminNode + "get-registered-users-num"
	NodeOnlineUsers     = adminNode + "get-online-users-num"
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin runs ad-hoc commands.
type Plugin struct {
	host  plugins.Host
	m     *plugins.Manager // to find the Providers; nil: admin commands only
	admin map[string]*command
}

// Command is an ad-hoc command another plugin offers to the domain's
// users on the server's JID (see Provider). A command with a form runs
// in two stages (form, then submit); one without runs at once.
type Command struct {
	// Node names the command (its XEP-0050 node); Name is what clients
	// list.
	Node, Name string
	// Form returns the form the first execute shows the user (a
	// jabber:x:data form of type "form"); nil runs the command at once.
	Form func() *wire.Element
	// Run runs the command for a local user (from: the full JID that
	// sent it) with the submitted form's values, and returns what the
	// completed command carries (a <note/>, a result form) or nil. A
	// *wire.StanzaError is the command's error.
	Run func(ctx context.Context, from string, values map[string][]string) (*wire.Element, error)
}

// Provider is a running plugin that offers ad-hoc commands to the
// domain's users. The adhoc plugin lists and runs them while the
// provider runs; a node an administration command already uses is not
// taken.
type Provider interface {
	plugins.Plugin
	AdHocCommands() []Command
}

// command is one command this plugin serves: an administration command
// (admin: administrators only) or a Provider's (the domain's users).
type command struct {
	Command
	admin bool
}

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
	_ plugins.DiscoNodes    = (*Plugin)(nil)
	_ plugins.ManagerAware  = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin {
	p := &Plugin{admin: map[string]*command{}}
	for _, c := range adminCommands(p) {
		p.admin[c.Node] = &command{Command: c, admin: true}
	}
	return p
}

// SetManager gives the plugin the manager whose Providers it serves.
func (p *Plugin) SetManager(m *plugins.Manager) { p.m = m }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

func (p *Plugin) isAdmin(from string) bool {
	bare := wire.JIDOf(from).Bare()
	return bare != "" && p.host.IsAdmin(bare)
}

// commands returns every command by node: the administration ones and
// those the running Providers offer.
func (p *Plugin) commands() map[string]*command {
	if p.m == nil {
		return p.admin
	}
	all := maps.Clone(p.admin)
	for _, pl := range p.m.Plugins() {
		pr, ok := pl.(Provider)
		if !ok {
			continue
		}
		for _, c := range pr.AdHocCommands() {
			if _, taken := all[c.Node]; !taken && c.Node != "" && c.Run != nil {
				all[c.Node] = &command{Command: c}
			}
		}
	}
	return all
}

// allowed reports whether a requester may see and run c; local: the
// requester is a user of this domain.
func (p *Plugin) allowed(c *command, from string, local bool) bool {
	if c.admin {
		return p.isAdmin(from)
	}
	return local
}

// DiscoNodeItems lists, under the commands node, the commands the
// requester may run.
func (p *Plugin) DiscoNodeItems(ctx context.Context, from, node string) ([]plugins.DiscoItem, bool) {
	cmds := p.commands()
	if node == NS {
		local := wire.JIDOf(from).Domain() == p.host.Domain()
		var items []plugins.DiscoItem
		for _, n := range slices.Sorted(maps.Keys(cmds)) {
			if p.allowed(cmds[n], from, local) {
				items = append(items, plugins.DiscoItem{JID: p.host.Domain(), Node: n, Name: cmds[n].Name})
			}
		}
		return items, true
	}
	if _, ok := cmds[node]; ok {
		return nil, true
	}
	return nil, false
}

// DiscoNodeInfo describes the commands node and each command.
func (p *Plugin) DiscoNodeInfo(ctx context.Context, from, node string) ([]plugins.Identity, []string, bool) {
	if node == NS {
		return []plugins.Identity{{Category: "automation", Type: "command-list"}}, []string{wire.NSDiscoInfo, wire.NSDiscoItems}, true
	}
	c, ok := p.commands()[node]
	if !ok {
		return nil, nil, false
	}
	return []plugins.Identity{{Category: "automation", Type: "command-node", Name: c.Name}}, []string{NS, NSData}, true
}

// HandleIQ executes commands.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	cmd := iq.Payload()
	if iq.Stanza.Type() != "set" || cmd.Name != "command" {
		return nil, wire.ErrBadRequest
	}
	c, ok := p.commands()[cmd.Attr("node")]
	if !ok {
		return nil, wire.ErrItemNotFound
	}
	if !p.allowed(c, iq.From, iq.FromLocal) {
		return nil, wire.ErrForbidden
	}
	sid := cmd.Attr("sessionid")
	if sid == "" {
		sid = newSessionID()
	}
	reply := wire.NewNS("command", NS)
	reply.SetAttr("node", c.Node).SetAttr("sessionid", sid)
	action := cmd.Attr("action")
	switch action {
	case "", "execute", "complete", "next":
	case "cancel":
		return reply.SetAttr("status", "canceled"), nil
	default:
		return nil, wire.ErrBadRequest.WithText("bad action " + action)
	}
	submitted := submittedForm(cmd)
	if c.Form != nil && submitted == nil {
		if action == "complete" {
			return nil, wire.ErrBadRequest.WithText("the form is missing")
		}
		reply.SetAttr("status", "executing")
		reply.Append(wire.New("actions", "execute", "complete").Append(wire.New("complete")))
		return reply.Append(c.Form()), nil
	}
	result, err := c.Run(ctx, iq.From, formValues(submitted))
	if err != nil {
		return nil, err
	}
	reply.SetAttr("status", "completed")
	return reply.Append(result), nil
}

// submittedForm returns the command's submitted data form, or nil.
func submittedForm(cmd *wire.Element) *wire.Element {
	x := cmd.Child("x", NSData)
	if x == nil || x.Attr("type") != "submit" {
		return nil
	}
	return x
}

// formValues returns the values of each field of a form.
func formValues(x *wire.Element) map[string][]string {
	out := map[string][]string{}
	if x == nil {
		return out
	}
	for _, f := range x.ChildrenNamed("field", "") {
		name := f.Attr("var")
		if name == "" {
			continue
		}
		vals := []string{}
		for _, v := range f.ChildrenNamed("value", "") {
			vals = append(vals, v.AllText())
		}
		out[name] = vals
	}
	return out
}

func first(values map[string][]string, name string) string {
	if v := values[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Form building (XEP-0004).

func dataForm(typ, title, instructions string, fields ...*wire.Element) *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", typ)
	if title != "" {
		x.Append(wire.New("title").SetText(title))
	}
	if instructions != "" {
		x.Append(wire.New("instructions").SetText(instructions))
	}
	x.Append(field("hidden", "FORM_TYPE", "", false, NSAdmin))
	return x.Append(fields...)
}

func field(typ, name, label string, required bool, values ...string) *wire.Element {
	f := wire.New("field")
	f.SetAttr("type", typ).SetAttr("label", label).SetAttr("var", name)
	if required {
		f.Append(wire.New("required"))
	}
	for _, v := range values {
		f.Append(wire.New("value").SetText(v))
	}
	return f
}
