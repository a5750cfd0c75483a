// Package pubsub is XEP-0060 publish-subscribe over the map module store,
// shared by the two services that speak it: every account's PEP service
// (XEP-0163, plugins/pep) and the general service at pubsub.<domain>. An
// Engine answers pubsub and pubsub#owner IQs for one kind of service;
// Options say what differs (who owns nodes, who may create them, the
// default configuration, where the state lives, implicit recipients).
//
// Files: config.go is the node configuration (the pubsub#node_config
// form, XEP-0223 preconditions) and subscription options; store.go the
// four map stores (Layout) and the move of single-item PEP records;
// access.go affiliations and access models; handle.go the entity use
// cases (publish, retract, items, subscribe, unsubscribe, options,
// create); owner.go the owner use cases (configure, default, delete,
// purge, subscriptions, affiliations); notify.go notifications; api.go
// what the server does on its own behalf.
//
// What it implements: leaf nodes (no collections); access models open,
// presence, roster (with roster_groups_allowed) and whitelist, not
// authorize (so every subscription is "subscribed", never pending);
// publish models publishers, subscribers and open; affiliations owner,
// publisher, publish-only, member, none and outcast; one subscription
// per JID and node (a bare or a full JID), with the pubsub#deliver
// option; persistent and transient nodes, payload and notification-only
// (§7.1.3.6); max_items, including "max"; XEP-0223 publish-options
// checked against the node's configuration (precondition-not-met), or
// used as the configuration of an auto-created node. Every error carries
// the pubsub#errors condition XEP-0060 names for it.
//
// State: nothing in memory. Every request reads the node's configuration
// (and what else it needs) from the store, so any node of a cluster may
// serve any request, and one request's notifications leave once, from
// the node that handled it.
package pubsub

// Namespaces.
const (
	NS       = "http://jabber.org/protocol/pubsub"
	NSOwner  = "http://jabber.org/protocol/pubsub#owner"
	NSEvent  = "http://jabber.org/protocol/pubsub#event"
	NSErrors = "http://jabber.org/protocol/pubsub#errors"
	NSData   = "jabber:x:data"
)

// Features lists the XEP-0060 features an engine implements, for
// disco#info, each NS + "#" + the name; extra names the service's own
// (PEP: auto-create, filtered-notifications, presence-notifications).
func Features(extra ...string) []string {
	list := []string{
		"access-open", "access-presence", "access-roster", "access-whitelist",
		"config-node", "create-and-configure", "create-nodes", "delete-items",
		"delete-nodes", "item-ids", "last-published", "manage-affiliations",
		"manage-subscriptions", "member-affiliation", "modify-affiliations",
		"multi-items", "outcast-affiliation", "persistent-items", "publish",
		"publish-only-affiliation", "publish-options", "publisher-affiliation",
		"purge-nodes", "retract-items", "retrieve-affiliations", "retrieve-default",
		"retrieve-default-sub", "retrieve-items", "retrieve-subscriptions",
		"subscribe", "subscription-options",
	}
	out := []string{NS}
	for _, f := range append(list, extra...) {
		out = append(out, NS+"#"+f)
	}
	return out
}
