package pep

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/wire"
)

// Caps tracking in a cluster. Every node where the owner has a session
// sees the presence of the owner's contacts and other resources, and
// keeps its own recipient table (caps.go). One of them, the owner's home
// node, takes every decision about who gets the owner's items without a
// subscription: the node of the owner's first available resource (by
// JID, from the cluster-wide resource list), which sees every presence
// the others see.
//
//   - The last items a recipient newly asks for go out from the home
//     only.
//   - A change made on another node (a publish, a retraction...) asks the
//     home for its implicit recipients (kindImplicit) and notifies them
//     itself, as it notifies the node's subscribers. The home decides
//     with the same records, under the same lock, as its last-item sends,
//     so a client whose caps change while the owner publishes elsewhere
//     gets the item once: as the last item or as the notification, never
//     both or neither. When the home cannot answer (gone, an older
//     release, or it is not the home by its own reckoning, the resource
//     list having just changed) the node decides from its own table, and
//     sends the last items of what a publish it decided missed.
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

// home reports whether this node is the owner's home (homeNode).
func (p *Plugin) home(ctx context.Context, owner string) bool {
	n := p.homeNode(ctx, owner)
	return n == "" || n == p.nodeName()
}

// homeNode names the node that decides the owner's implicit deliveries:
// the node of the owner's first available resource (or first resource,
// when none is available yet); "" when the owner has none or the list
// cannot be read (then each node decides for itself).
func (p *Plugin) homeNode(ctx context.Context, owner string) string {
	res, err := p.host.Resources(ctx, owner)
	if err != nil || len(res) == 0 {
		return ""
	}
	var first *plugins.Resource
	for i := range res {
		r := &res[i]
		if first == nil || (r.Available && !first.Available) || (r.Available == first.Available && r.JID < first.JID) {
			first = r
		}
	}
	return first.Node
}

// kindImplicit is the cluster message that asks the owner's home for
// the implicit recipients of one event: an implicitRequest, answered
// with the JSON list of full JIDs.
const kindImplicit = "implicit"

type implicitRequest struct {
	Owner   string `json:"owner"`
	Node    string `json:"node"`
	Version int64  `json:"version,omitempty"` // a publish's item; 0 for other events
}

var errNotHome = errors.New("pep: not the owner's home node")

// implicit is the engine's Options.Implicit: the full JIDs an event of
// the owner's node reaches without a subscription, decided on the
// owner's home.
func (p *Plugin) implicit(ctx context.Context, owner, node string, it *pubsub.Item) []string {
	var version int64
	if it != nil {
		version = it.Version
	}
	if home := p.homeNode(ctx, owner); home != "" && home != p.nodeName() {
		req, _ := json.Marshal(implicitRequest{Owner: owner, Node: node, Version: version})
		b, err := p.host.Cluster().Call(ctx, home, kindImplicit, req)
		var list []string
		if err == nil {
			err = json.Unmarshal(b, &list)
		}
		if err == nil {
			return list
		}
		p.host.Logger().Debug("pep: the owner's home node did not decide a notification; deciding here", "owner", owner, "node", node, "home", home, "err", err)
	}
	return p.interested(ctx, owner, node, version)
}

// handleImplicit answers kindImplicit on the owner's home.
func (p *Plugin) handleImplicit(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req implicitRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("pep: implicit recipients request: %w", err)
	}
	if !p.home(ctx, req.Owner) {
		return nil, errNotHome
	}
	return json.Marshal(p.interested(ctx, req.Owner, req.Node, req.Version))
}
