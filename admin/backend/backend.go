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
	"github.com/aviary-im/aviary/cluster/hazelcast"
	xep0092 "github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/s2s"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/storage"
	"mellium.im/xmpp/jid"
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

// Nodes lists live members with the plugin versions each reports.
func (b *Backend) Nodes(ctx context.Context) ([]api.Node, error) {
	ms, err := b.n.Cluster().Members(ctx)
	if err != nil {
		return nil, err
	}
	nps, err := b.n.Store().ListNodePlugins(ctx)
	if err != nil {
		return nil, err
	}
	senior := seniorOf(ms)
	out := make([]api.Node, 0, len(ms))
	ttl := b.n.Config().Cluster.NodeTTL
	for _, m := range ms {
		nd := api.Node{Name: m.Name, Version: m.Version, Started: m.Started, Sessions: m.Sessions, Load: m.Load,
			Senior: m.Name == senior, Draining: m.Draining, Addrs: m.ClientAddrs,
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
	return hazelcast.ReadSwitch(ctx, b.n.Store())
}

// SetClusterEnabled writes the switch to the shared database; every node
// follows (PostgreSQL notification, Hazelcast topic hint, periodic re-read).
func (b *Backend) SetClusterEnabled(ctx context.Context, on bool) error {
	v := "false"
	if on {
		v = "true"
	}
	if err := b.n.Store().SetProperty(ctx, hazelcast.SwitchProperty, v); err != nil {
		return err
	}
	cc := b.n.Config().Cluster
	if len(cc.Hazelcast) > 0 {
		if err := hazelcast.PublishSwitch(ctx, cc, "", on, b.log); err != nil {
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
	ms, err := b.n.Cluster().Members(ctx)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Name == node {
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
	seen := map[string]bool{}
	for _, s := range b.n.Router().LocalSessions() {
		full := s.JID()
		bare := full.Bare().String()
		sess := api.Session{JID: full.String(), Node: node}
		if !seen[bare] {
			seen[bare] = true
		}
		if res, err := b.n.Router().Resources(ctx, bare); err == nil {
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
	out := b.localSessions(ctx)
	ms, err := b.n.Cluster().Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Name == b.NodeName() {
			continue
		}
		raw, err := b.n.Cluster().Call(ctx, m.Name, kindSessions, nil)
		if err != nil {
			b.log.Warn("sessions of a node unavailable", "node", m.Name, "err", err)
			continue
		}
		var theirs []api.Session
		if err := json.Unmarshal(raw, &theirs); err == nil {
			out = append(out, theirs...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	if out == nil {
		out = []api.Session{}
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

// Kick closes one session wherever it is.
func (b *Backend) Kick(ctx context.Context, full string) (bool, error) {
	j, err := jid.Parse(full)
	if err != nil {
		return false, err
	}
	res, err := b.n.Router().Resources(ctx, j.Bare().String())
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
		raw, err := b.n.Cluster().Call(ctx, r.Node, kindKick, []byte(r.JID))
		if err != nil {
			return false, err
		}
		var ok bool
		return ok, json.Unmarshal(raw, &ok)
	}
	return false, nil
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
	out := b.localS2S()
	ms, err := b.n.Cluster().Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Name == b.NodeName() {
			continue
		}
		raw, err := b.n.Cluster().Call(ctx, m.Name, kindS2S, nil)
		if err != nil {
			continue
		}
		var theirs []api.S2SStream
		if json.Unmarshal(raw, &theirs) == nil {
			out = append(out, theirs...)
		}
	}
	if out == nil {
		out = []api.S2SStream{}
	}
	return out, nil
}
