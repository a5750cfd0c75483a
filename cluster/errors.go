package cluster

import "errors"

var (
	// ErrNodeGone means the target node is not a live member or its link is down.
	ErrNodeGone = errors.New("cluster: node gone")
	// ErrNoHandler means the receiving node has no handler for the kind.
	ErrNoHandler = errors.New("cluster: no handler for message kind")
	// ErrNotClustered means the operation needs clustering, which is off.
	ErrNotClustered = errors.New("cluster: clustering is disabled")
	// ErrHandBack, returned by a Send handler, gives the message back
	// instead of handling it: the link does not acknowledge it, so the
	// sending node gets it back as undelivered (and routes it again, or
	// falls back), as if this node had died with it in flight. A node
	// that is stopping returns it for what it can no longer handle
	// properly (its plugins are stopping).
	ErrHandBack = errors.New("cluster: message handed back (node stopping)")
)
