package plugins

import (
	"context"
	"errors"
	"sync"
)

// This file is the plugins' view of the cluster (Host.Cluster): who is
// alive, which node owns a key, and messages between the instances of one
// plugin on the nodes. The server implements Cluster on top of its
// cluster.Cluster (server/plugincluster); plugins/placement builds keyed
// state on it; plugintest.Net simulates it in memory for unit tests.

// Member is one live node as plugins see it.
type Member struct {
	Name string
	// Draining: the node is moving its clients away before it stops. It
	// still answers Send and Call, but owns no keys (Owner skips it).
	Draining bool
}

// ClusterHandler handles a message from the same plugin on another node
// (or on this one: Send and Call to NodeName() run it in the caller's
// goroutine). For Call the returned bytes are the reply and an error goes
// back to the caller (as text: the caller cannot errors.Is it); for Send
// both are dropped.
type ClusterHandler func(ctx context.Context, fromNode string, payload []byte) ([]byte, error)

// Answer is one member's reply to CallAll.
type Answer struct {
	Node    string
	Payload []byte
	// Err is why the member did not answer: its handler failed, it had
	// none, it is gone (ErrNodeGone), or it did not answer before the
	// context ended (context.DeadlineExceeded).
	Err error
}

// MembersChange is what OnMembersChange reports: the members before and
// after, each sorted by name, this node included.
type MembersChange struct {
	Before, After []Member
}

// Cluster is one plugin's view of the cluster. Messages reach the same
// plugin's instance on other nodes: kinds are namespaced by the plugin's
// ID, so two plugins may both use "sync" without meeting. With clustering
// off, or on a node alone (cluster/local), Members is this node only and
// every key is owned here.
type Cluster interface {
	// NodeName is this node's name.
	NodeName() string
	// Members returns the live nodes this node shares the cluster with,
	// this one included, sorted by name, with their draining flags.
	Members() []Member
	// Owner returns the member that owns key: Rendezvous(key, Members()),
	// so every node that sees the same members names the same owner
	// without asking.
	Owner(key string) string

	// Send delivers a one-way message to the plugin's handler for kind on
	// node. It returns ErrNodeGone when the node is not a member or cannot
	// be reached. A message accepted and then lost with its node is not
	// reported: use Call when the sender must know.
	Send(ctx context.Context, node, kind string, payload []byte) error
	// Call sends a request to the plugin's handler for kind on node and
	// waits for the reply until ctx ends (or cluster.operation_timeout
	// when ctx has no deadline). It fails with ErrNodeGone when the node
	// is not a member, cannot be reached or died before answering, with
	// ErrNoHandler when the plugin there registered no handler for kind.
	// Its handler starts after the handlers of the Sends this node made to
	// node before it have returned (of those that arrived): a Call sees
	// what the Sends before it changed. Group chat relies on it: a room's
	// new host asks a node who is in the room after the fan-out that told
	// that node someone left (plugins/muc).
	Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error)
	// CallAll calls every member, this node included, at once and returns
	// one Answer per member in Members order when all have answered or
	// ctx ended (or cluster.operation_timeout when ctx has no deadline): a
	// member that did not answer in time is reported with its error.
	CallAll(ctx context.Context, kind string, payload []byte) []Answer
	// Handle registers the plugin's handler for kind, replacing its
	// previous one (a new version of the plugin takes over), and returns
	// the function that removes it. Send handlers run in order, one at a
	// time per sending node, and must not block for long; Call handlers
	// run concurrently.
	Handle(kind string, h ClusterHandler) (remove func())
	// OnMembersChange registers fn, run when Members changes: a node
	// joined, left or died (once the cluster noticed, after
	// cluster.node_ttl), started or stopped draining, or clustering was
	// switched off or on. Callbacks run one at a time, in order, on the
	// cluster's event goroutine: they must not block (start work
	// elsewhere). It returns the function that removes fn.
	OnMembersChange(fn func(MembersChange)) (remove func())
}

// Errors of Cluster calls; implementations wrap them.
var (
	// ErrNodeGone means the node is not a live member, its link is down, or
	// it died before answering.
	ErrNodeGone = errors.New("plugins: node gone")
	// ErrNoHandler means the plugin on that node has no handler for the
	// kind (another version, or not started yet).
	ErrNoHandler = errors.New("plugins: no handler for the message kind on that node")
)

// CallMembers runs call for every member at once and returns one Answer
// per member, in the order given, when all have returned: what
// Cluster.CallAll does with the implementation's Call.
func CallMembers(ctx context.Context, members []Member, call func(ctx context.Context, node string) ([]byte, error)) []Answer {
	out := make([]Answer, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := call(ctx, m.Name)
			out[i] = Answer{Node: m.Name, Payload: b, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// Rendezvous returns the member that owns key by rendezvous (highest
// random weight) hashing over the members that are not draining, or over
// all of them when every one drains; "" when there are none. It depends
// only on the names, not their order, so nodes that see the same members
// agree without asking; and when a member joins or leaves, only the keys
// it wins or held move (about 1/n of them), the rest stay where they are.
func Rendezvous(key string, members []Member) string {
	best, bestScore := "", uint64(0)
	pick := func(skipDraining bool) {
		for _, m := range members {
			if skipDraining && m.Draining {
				continue
			}
			s := weight(m.Name, key)
			if best == "" || s > bestScore || (s == bestScore && m.Name < best) {
				best, bestScore = m.Name, s
			}
		}
	}
	pick(true)
	if best == "" {
		pick(false)
	}
	return best
}

// weight is the pseudo-random weight of (node, key): 64-bit FNV-1a over
// the node name, a zero byte and the key, then the MurmurHash3 finalizer,
// because FNV alone spreads nearby inputs (node1, node2) poorly in the
// high bits that decide the comparison. Every node computes the same
// weight: nothing here is seeded per process.
func weight(node, key string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= prime
	}
	h *= prime // the zero separator: "ab"+"c" and "a"+"bc" differ
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
