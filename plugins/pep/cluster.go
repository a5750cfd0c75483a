package pep

import (
	"context"
	"encoding/hex"
	"strings"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// Caps tracking in a cluster. Every node where the owner has a session
// sees the presence of the owner's contacts and other resources, and
// keeps its own recipient table (caps.go), so that a publish made on it
// reaches everyone once. Two things would otherwise happen once per such
// node:
//
//   - The last items a recipient newly asks for: they go out only from
//     the owner's home node, the node of the owner's first available
//     resource (by JID, from the cluster-wide resource list), which sees
//     every presence the others see.
//   - The answer to a caps query comes back to the owner's bare JID on
//     the node of the client that answers, not necessarily the node that
//     asked: the query's ID names the asking node, and an answer to
//     another node's query is passed on to one of the owner's resources
//     there, where PointDeliver hands it to the plugin instead of the
//     client.

// nodeName is this node's name in the cluster.
func (p *Plugin) nodeName() string { return p.host.Config().Cluster.NodeName }

// queryID makes a caps query's ID: the prefix, the asking node (hex),
// a random part.
func (p *Plugin) queryID() string {
	return queryPrefix + hex.EncodeToString([]byte(p.nodeName())) + "-" + randomID()
}

// askingNode reads the node a query ID names; ok is false for an ID of
// another form (a node of an earlier release).
func askingNode(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, queryPrefix)
	if !ok {
		return "", false
	}
	h, _, ok := strings.Cut(rest, "-")
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// forwardAnswer passes a caps answer on to the node whose query it
// answers, addressed to one of the owner's resources there; it is
// dropped when the owner has none left on that node (the query's
// waiters went with them).
func (p *Plugin) forwardAnswer(ctx context.Context, node string, el *wire.Element) {
	owner := wire.JIDOf(el.To()).Bare()
	res, err := p.host.Resources(ctx, owner)
	if err != nil {
		p.host.Logger().Warn("pep: passing a caps answer on", "owner", owner, "node", node, "err", err)
		return
	}
	for _, r := range res {
		if r.Node == node {
			fwd := el.Copy()
			fwd.SetAttr("to", r.JID)
			p.host.Route(ctx, fwd)
			return
		}
	}
}

// home reports whether this node sends the owner's last items on
// presence: it hosts the owner's first available resource (or first
// resource, when none is available yet), or the owner has none.
func (p *Plugin) home(ctx context.Context, owner string) bool {
	res, err := p.host.Resources(ctx, owner)
	if err != nil || len(res) == 0 {
		return true
	}
	var first *plugins.Resource
	for i := range res {
		r := &res[i]
		if first == nil || (r.Available && !first.Available) || (r.Available == first.Available && r.JID < first.JID) {
			first = r
		}
	}
	return first.Node == "" || first.Node == p.nodeName()
}
