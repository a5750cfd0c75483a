// Package backend implements the admin API (admin/api.Backend) on a
// running node, cluster-wide: questions about other nodes (their sessions,
// their federation streams) and actions on them (kick, drain) travel over
// the node links as "admin.*" messages that every node answers for itself.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/cluster"
	xep0092 "github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/s2s"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Message kinds between nodes.
const (
	kindSessions = "admin.sessions"
	kindKick     = "admin.kick"
	kindS2S      = "admin.s2s"
	kindDrain    = "admin.drain"
)

// ErrNoPluginHost means third-party plugins are not enabled on this node.
var ErrNoPluginHost = errors.New("backend: the plugin runtime is not running on this node")

// Options build a Backend.
type Options struct {
	Node *server.Node
	// Plugins is the node's plugin host (nil: plugin pages say so).
	Plugins *pluginhost.Host
	// S2S reports this node's federation streams (nil: none).
	S2S func() s2s.Stats
	// Drain starts draining this node (nil: draining unsupported).
	Drain func(ctx context.Context) error
	// Rates measures this node's client stanza rates. Optional.
	Rates  *RateMeter
	Logger *slog.Logger
}

// Backend is api.Backend for one node.
type Backend struct {
	o   Options
	n   *server.Node
	log *slog.Logger
}

var _ api.Backend = (*Backend)(nil)

// New builds the backend and registers its node-link handlers.
func New(o Options) *Backend {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	b := &Backend{o: o, n: o.Node, log: o.Logger.With("component", "admin")}
	c := b.n.Cluster()
	c.Handle(kindSessions, func(ctx context.Context, from string, _ []byte) ([]byte, error) {
		return json.Marshal(b.localSessions(ctx))
	})
	c.Handle(kindKick, func(ctx context.Context, from string, payload []byte) ([]byte, error) {
		return json.Marshal(b.kickLocal(string(payload)))
	})
	c.Handle(kindS2S, func(ctx context.Context, from string, _ []byte) ([]byte, error) {
		return json.Marshal(b.localS2S())
	})
	c.Handle(kindDrain, func(ctx context.Context, from string, _ []byte) ([]byte, error) {
		if b.o.Drain == nil {
			return nil, errors.New("draining is not supported on this node")
		}
		return nil, b.o.Drain(ctx)
	})
	b.registerConsole(c)
	return b
}

// Domain returns the served domain.
func (b *Backend) Domain() string { return b.n.Config().Domain }

// NodeName returns this node's name.
func (b *Backend) NodeName() string { return b.n.Cluster().NodeName() }

// Overview summarises the cluster.
func (b *Backend) Overview(ctx context.Context) (api.Overview, error) {
	nodes, err := b.Nodes(ctx)
	if err != nil {
		return api.Overview{}, err
	}
	users, err := b.n.Store().CountUsers(ctx)
	if err != nil {
		return api.Overview{}, err
	}
	on, err := b.ClusterEnabled(ctx)
	if err != nil {
		return api.Overview{}, err
	}
	o := api.Overview{Domain: b.Domain(), Clustered: b.n.Cluster().Clustered(), ClusterEnabled: on, Nodes: nodes, Users: users, Now: time.Now().UTC()}
	if d, ok := b.n.Cluster().(cluster.Detacher); ok {
		o.Detached = d.Detached()
	}
	for _, nd := range nodes {
		o.Sessions += nd.Sessions
		o.StanzasIn += nd.StanzasIn
		o.StanzasOut += nd.StanzasOut
	}
	return o, nil
}

// rates is this node's current stanza rates (0, 0 without a meter).
func (b *Backend) rates() (in, out float64) {
	if b.o.Rates == nil {
		return 0, 0
	}
	return b.o.Rates.Rates()
}

// Nodes lists the live nodes with the plugin versions each reports: the
// members, and while clustering is off every node the links reach (see
// cluster.Reacher), each saying whether it shares sessions with this one.
func (b *Backend) Nodes(ctx context.Context) ([]api.Node, error) {
	rs, err := b.reachable(ctx)
	if err != nil {
		return nil, err
	}
	nps, err := b.n.Store().ListNodePlugins(ctx)
	if err != nil {
		return nil, err
	}
	ms := make([]cluster.Member, 0, len(rs))
	for _, r := range rs {
		if r.Clustered || r.Name == b.NodeName() {
			ms = append(ms, r.Member)
		}
	}
	senior := seniorOf(ms)
	out := make([]api.Node, 0, len(rs))
	ttl := b.n.Config().Cluster.NodeTTL
	for _, r := range rs {
		m := r.Member
		nd := api.Node{Name: m.Name, Version: m.Version, Started: m.Started, Sessions: m.Sessions, Load: m.Load,
			Senior: m.Name == senior, Draining: m.Draining, Addrs: m.ClientAddrs, Clustered: r.Clustered,
			Healthy: ttl <= 0 || time.Since(m.Seen) < ttl, StanzasIn: m.StanzasIn, StanzasOut: m.StanzasOut}
		if m.Name == b.NodeName() {
			nd.Sessions = len(b.n.Router().LocalSessions())
			nd.StanzasIn, nd.StanzasOut = b.rates()
			nd.Healthy = true
			if nd.Version == "" {
				nd.Version = xep0092.Version
			}
		}
		for _, np := range nps {
			if np.Node != m.Name || np.State == pluginhost.StateUnloaded {
				continue
			}
			nd.PluginStates = append(nd.PluginStates, pluginState(np))
			if np.State == pluginhost.StateLoaded {
				if nd.Plugins == nil {
					nd.Plugins = map[string]string{}
				}
				nd.Plugins[np.Name] = np.Version
			}
		}
		out = append(out, nd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func seniorOf(ms []cluster.Member) string {
	best := ""
	var bestT time.Time
	for _, m := range ms {
		if best == "" || m.Started.Before(bestT) || (m.Started.Equal(bestT) && m.Name < best) {
			best, bestT = m.Name, m.Started
		}
	}
	return best
}

// ClusterEnabled reads the cluster-wide switch (on unless set off).
func (b *Backend) ClusterEnabled(ctx context.Context) (bool, error) {
	return cluster.ReadSwitch(ctx, b.n.Store())
}

// SetClusterEnabled writes the switch to the shared database; every node
// follows (PostgreSQL notification, the cluster's own hint when it has
// one, periodic re-read).
func (b *Backend) SetClusterEnabled(ctx context.Context, on bool) error {
	if err := cluster.WriteSwitch(ctx, b.n.Store(), on); err != nil {
		return err
	}
	if a, ok := b.n.Cluster().(cluster.SwitchAnnouncer); ok {
		if err := a.AnnounceSwitch(ctx, on); err != nil {
			b.log.Warn("switch hint not published; nodes follow the database within seconds", "err", err)
		}
	}
	return nil
}

// Drain asks a node to drain.
func (b *Backend) Drain(ctx context.Context, node string) error {
	if !b.isMember(ctx, node) {
		return fmt.Errorf("node %q: %w", node, storage.ErrNotFound)
	}
	if node == b.NodeName() {
		if b.o.Drain == nil {
			return errors.New("draining is not supported on this node")
		}
		return b.o.Drain(ctx)
	}
	_, err := b.n.Cluster().Call(ctx, node, kindDrain, nil)
	return err
}

func (b *Backend) isMember(ctx context.Context, node string) bool {
	rs, err := b.reachable(ctx)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if r.Name == node {
			return true
		}
	}
	return false
}

// ListUsers searches accounts.
func (b *Backend) ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, int, error) {
	users, err := b.n.Store().ListUsers(ctx, contains, limit, offset)
	if err != nil {
		return nil, 0, err
	}
	total := len(users) + offset
	if contains == "" {
		if total, err = b.n.Store().CountUsers(ctx); err != nil {
			return nil, 0, err
		}
	} else if len(users) == limit {
		// Count the matches without loading them all at once.
		all, err := b.n.Store().ListUsers(ctx, contains, 100000, 0)
		if err == nil {
			total = len(all)
		}
	}
	return users, total, nil
}

// CreateUser adds an account (SCRAM hashing in server/auth).
func (b *Backend) CreateUser(ctx context.Context, username, password string) error {
	err := b.n.Users().CreateUser(ctx, username, password)
	if err != nil && strings.Contains(err.Error(), "exists") && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("%w: %v", storage.ErrExists, err)
	}
	return err
}

// DeleteUser removes an account and closes its sessions everywhere.
func (b *Backend) DeleteUser(ctx context.Context, username string) error {
	if _, err := b.n.Store().GetUser(ctx, username); err != nil {
		return err
	}
	return b.n.Users().DeleteUser(ctx, username)
}

// SetPassword resets a password.
func (b *Backend) SetPassword(ctx context.Context, username, password string) error {
	if _, err := b.n.Store().GetUser(ctx, username); err != nil {
		return err
	}
	return b.n.Users().SetPassword(ctx, username, password)
}

// CheckPassword verifies a password for admin sign-in.
func (b *Backend) CheckPassword(ctx context.Context, username, password string) (bool, error) {
	return b.n.Users().CheckPassword(ctx, username, password)
}

func (b *Backend) localSessions(ctx context.Context) []api.Session {
	node := b.NodeName()
	var out []api.Session
	for _, s := range b.n.Router().LocalSessions() {
		var sess api.Session
		if d, ok := s.(interface{ Info() c2s.SessionInfo }); ok {
			sess = sessionOf(node, d)
		} else {
			sess = api.Session{JID: s.JID().String(), Node: node}
		}
		if res, err := b.n.Router().Resources(ctx, s.JID().Bare()); err == nil {
			for _, r := range res {
				if r.JID == sess.JID {
					sess.Priority, sess.Available = r.Priority, r.Available
				}
			}
		}
		out = append(out, sess)
	}
	return out
}

// Sessions asks every node for its sessions.
func (b *Backend) Sessions(ctx context.Context) ([]api.Session, error) {
	out, err := gatherLists(ctx, b, kindSessions, b.localSessions(ctx), nil)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	if out == nil {
		out = []api.Session{}
	}
	return out, nil
}

// gatherLists appends to out the list (JSON) each other node answers to
// kind (askOthers; onErr as there).
func gatherLists[T any](ctx context.Context, b *Backend, kind string, out []T, onErr func(node string, err error)) ([]T, error) {
	err := b.askOthers(ctx, kind, nil, func(node string, raw []byte) error {
		var theirs []T
		if err := json.Unmarshal(raw, &theirs); err != nil {
			return err
		}
		out = append(out, theirs...)
		return nil
	}, onErr)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (b *Backend) kickLocal(full string) bool {
	for _, s := range b.n.Router().LocalSessions() {
		if s.JID().String() == full {
			s.Close("policy-violation", "disconnected by an administrator")
			return true
		}
	}
	return false
}

// Kick closes one session wherever it is: where the routes say, or, for
// nodes serving alone (clustering off), by asking each.
func (b *Backend) Kick(ctx context.Context, full string) (bool, error) {
	j, err := wire.ParseJID(full)
	if err != nil {
		return false, err
	}
	res, err := b.n.Router().Resources(ctx, j.Bare())
	if err != nil {
		return false, err
	}
	for _, r := range res {
		if r.JID != j.String() {
			continue
		}
		if r.Node == "" || r.Node == b.NodeName() {
			return b.kickLocal(r.JID), nil
		}
		return b.kickOn(ctx, r.Node, r.JID)
	}
	rs, err := b.reachable(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if r.Name == b.NodeName() || r.Clustered {
			continue
		}
		if ok, err := b.kickOn(ctx, r.Name, j.String()); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (b *Backend) kickOn(ctx context.Context, node, full string) (bool, error) {
	raw, err := b.n.Cluster().Call(ctx, node, kindKick, []byte(full))
	if err != nil {
		return false, err
	}
	var ok bool
	return ok, json.Unmarshal(raw, &ok)
}

func (b *Backend) localS2S() []api.S2SStream {
	if b.o.S2S == nil {
		return nil
	}
	var out []api.S2SStream
	for _, st := range b.o.S2S().Streams {
		out = append(out, api.S2SStream{Node: b.NodeName(), Direction: st.Direction, Local: st.Local, Remote: st.Remote, Auth: st.Method})
	}
	return out
}

// S2S lists federation streams on every node.
func (b *Backend) S2S(ctx context.Context) ([]api.S2SStream, error) {
	out, err := gatherLists(ctx, b, kindS2S, b.localS2S(), func(string, error) {})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []api.S2SStream{}
	}
	return out, nil
}
