package cluster

import "errors"

var (
	// ErrNodeGone means the target node is not a live member or its link is down.
	ErrNodeGone = errors.New("cluster: node gone")
	// ErrNoHandler means the receiving node has no handler for the kind.
	ErrNoHandler = errors.New("cluster: no handler for message kind")
	// ErrNotClustered means the operation needs clustering, which is off.
	ErrNotClustered = errors.New("cluster: clustering is disabled")
)
