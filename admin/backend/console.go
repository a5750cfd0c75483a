package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	xep0092 "github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/nodelog"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// What an Openfire operator expects of a console beyond the cluster and
// plugins: account details and locks, server information, live settings
// and the node's log. Questions about other nodes travel over the node
// links like the sessions list; while clustering is off the links still
// reach every node (cluster.Reacher), so the console shows the whole
// cluster either way.

// Message kinds between nodes for the console.
const (
	kindInfo     = "admin.info"
	kindSettings = "admin.settings"
	kindLogs     = "admin.logs"
	kindKickUser = "admin.kickuser"
)

// Bounds of what the console shows of one account.
const (
	offlineShown   = 50
	offlineStanzas = 4 << 10
	logLinesMax    = 1000
)

func (b *Backend) registerConsole(c cluster.Cluster) {
	c.Handle(kindInfo, func(ctx context.Context, from string, _ []byte) ([]byte, error) {
		return json.Marshal(b.localInfo(ctx))
	})
	c.Handle(kindSettings, func(ctx context.Context, from string, payload []byte) ([]byte, error) {
		var changes map[string]string
		if err := json.Unmarshal(payload, &changes); err != nil {
			return nil, err
		}
		changed, err := b.n.ChangeLive(changes, nil)
		if err != nil {
			return nil, err
		}
		return json.Marshal(changed)
	})
	c.Handle(kindLogs, func(ctx context.Context, from string, payload []byte) ([]byte, error) {
		var q api.LogQuery
		if err := json.Unmarshal(payload, &q); err != nil {
			return nil, err
		}
		return json.Marshal(b.localLogs(q))
	})
	c.Handle(kindKickUser, func(ctx context.Context, from string, payload []byte) ([]byte, error) {
		return json.Marshal(b.n.Router().Kick(ctx, string(payload), "account locked by an administrator"))
	})
}

// reachable lists every live node this one can reach, itself first, and
// whether each shares sessions with it: through cluster.Reacher when the
// cluster has it (every node, whatever the switch), else the members.
func (b *Backend) reachable(ctx context.Context) ([]cluster.Reachable, error) {
	if r, ok := b.n.Cluster().(cluster.Reacher); ok {
		return r.Reachable(ctx)
	}
	ms, err := b.n.Cluster().Members(ctx)
	if err != nil {
		return nil, err
	}
	clustered := b.n.Cluster().Clustered()
	out := make([]cluster.Reachable, 0, len(ms))
	for _, m := range ms {
		out = append(out, cluster.Reachable{Member: m, Clustered: clustered || m.Name == b.NodeName()})
	}
	return out, nil
}

// others is the names of the other nodes this one reaches.
func (b *Backend) others(ctx context.Context) ([]string, error) {
	rs, err := b.reachable(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		if r.Name != b.NodeName() {
			out = append(out, r.Name)
		}
	}
	return out, nil
}

// askOthers calls kind on every other node and hands each answer to fn;
// a node that does not answer is logged and left out (or, with onErr,
// reported).
func (b *Backend) askOthers(ctx context.Context, kind string, payload []byte, fn func(node string, raw []byte) error, onErr func(node string, err error)) error {
	names, err := b.others(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		raw, err := b.n.Cluster().Call(ctx, name, kind, payload)
		if err == nil {
			err = fn(name, raw)
		}
		if err != nil {
			if onErr != nil {
				onErr(name, err)
			} else {
				b.log.Warn("admin: a node did not answer", "node", name, "kind", kind, "err", err)
			}
		}
	}
	return nil
}

// sessionOf describes one local session.
func sessionOf(node string, s interface{ Info() c2s.SessionInfo }) api.Session {
	in := s.Info()
	out := api.Session{JID: in.JID, Node: node, Transport: in.Transport, Addr: in.Addr, Since: in.Since.UTC(),
		SM: in.SM, Resumable: in.Resumable, Detached: in.Detached, Unacked: in.Unacked, Inactive: in.Inactive}
	if in.Software != "" || in.Device != "" || in.Tag != "" || in.Caps != "" {
		out.Client = &api.Client{Software: in.Software, Device: in.Device, Tag: in.Tag, Caps: in.Caps}
	}
	return out
}

// User returns an account's details.
func (b *Backend) User(ctx context.Context, username string) (api.UserDetail, error) {
	st := b.n.Store()
	u, err := st.GetUser(ctx, username)
	if err != nil {
		return api.UserDetail{}, err
	}
	bare := u.Username + "@" + b.Domain()
	d := api.UserDetail{Username: u.Username, JID: bare, Created: u.CreatedAt, Locked: u.Locked(), LockedAt: u.LockedAt,
		Roster: []api.Contact{}, Offline: []api.OfflineMessage{}, Sessions: []api.Session{}}
	items, _, err := st.GetRoster(ctx, bare)
	if err != nil {
		return api.UserDetail{}, err
	}
	for _, it := range items {
		if !it.InRoster && !it.PendingIn {
			continue
		}
		d.Roster = append(d.Roster, api.Contact{JID: it.Contact, Name: it.Name, Subscription: it.Subscription,
			Ask: it.PendingOut, PendingIn: it.PendingIn, Groups: it.Groups})
	}
	if d.OfflineCount, err = st.CountOffline(ctx, bare); err != nil {
		return api.UserDetail{}, err
	}
	msgs, err := st.PeekOffline(ctx, bare, offlineShown)
	if err != nil {
		return api.UserDetail{}, err
	}
	for _, m := range msgs {
		d.Offline = append(d.Offline, offlineOf(m))
	}
	all, err := b.Sessions(ctx)
	if err != nil {
		return api.UserDetail{}, err
	}
	for _, s := range all {
		if strings.HasPrefix(s.JID, bare+"/") {
			d.Sessions = append(d.Sessions, s)
		}
	}
	return d, nil
}

func offlineOf(m storage.OfflineMessage) api.OfflineMessage {
	out := api.OfflineMessage{Stored: m.Stored, Stanza: string(m.Stanza)}
	if len(out.Stanza) > offlineStanzas {
		out.Stanza = out.Stanza[:offlineStanzas] + "…"
	}
	if el, err := wire.Parse(m.Stanza, wire.Limits{MaxStanzaBytes: len(m.Stanza) + 1}); err == nil {
		out.From, out.Type = el.From(), el.Type()
		out.Body = el.ChildText("body", "")
		if len(out.Body) > 1024 {
			out.Body = out.Body[:1024] + "…"
		}
	}
	return out
}

// SetUserLocked locks or unlocks an account. Locking closes the account's
// sessions on every node: the router reaches the nodes that share
// sessions with this one, and the nodes that serve alone (clustering off)
// are asked over their links.
func (b *Backend) SetUserLocked(ctx context.Context, username string, locked bool) (int, error) {
	if _, err := b.n.Store().GetUser(ctx, username); err != nil {
		return 0, err
	}
	closed, err := b.n.Users().SetLocked(ctx, username, locked)
	if err != nil || !locked {
		return closed, err
	}
	rs, err := b.reachable(ctx)
	if err != nil {
		return closed, nil // the lock holds; the sessions there end at their next login
	}
	bare := strings.ToLower(username) + "@" + b.Domain()
	if u, err := b.n.Store().GetUser(ctx, username); err == nil {
		bare = u.Username + "@" + b.Domain()
	}
	for _, r := range rs {
		if r.Name == b.NodeName() || r.Clustered {
			continue
		}
		raw, err := b.n.Cluster().Call(ctx, r.Name, kindKickUser, []byte(bare))
		var n int
		if err == nil && json.Unmarshal(raw, &n) == nil {
			closed += n
		} else if err != nil {
			b.log.Warn("admin: closing a locked account's sessions on a node failed", "node", r.Name, "err", err)
		}
	}
	return closed, nil
}

// started is when this node started, as it tells the cluster.
func (b *Backend) started(ctx context.Context) time.Time {
	if ms, err := b.n.Cluster().Members(ctx); err == nil {
		for _, m := range ms {
			if m.Name == b.NodeName() {
				return m.Started
			}
		}
	}
	return time.Time{}
}

func (b *Backend) localInfo(ctx context.Context) api.ServerInfo {
	bi := xep0092.Build()
	started := b.started(ctx)
	in := api.ServerInfo{Node: b.NodeName(), Domain: b.Domain(), Version: bi.Version, Started: started.UTC(),
		Revision: bi.Revision, BuildTime: bi.Time, Modified: bi.Modified, GoVersion: bi.GoVersion, Platform: bi.Platform}
	if !started.IsZero() {
		in.UptimeSeconds = time.Since(started).Seconds()
	}
	return in
}

// ServerInfo describes every node this one reaches.
func (b *Backend) ServerInfo(ctx context.Context) ([]api.ServerInfo, error) {
	out := []api.ServerInfo{b.localInfo(ctx)}
	err := b.askOthers(ctx, kindInfo, nil, func(node string, raw []byte) error {
		var in api.ServerInfo
		if err := json.Unmarshal(raw, &in); err != nil {
			return err
		}
		out = append(out, in)
		return nil
	}, func(node string, err error) {
		out = append(out, api.ServerInfo{Node: node, Error: err.Error()})
	})
	sort.Slice(out[1:], func(i, j int) bool { return out[1+i].Node < out[1+j].Node })
	return out, err
}

// Settings is this node's configuration, live values as they are now.
func (b *Backend) Settings(ctx context.Context) (api.Settings, error) {
	cfg := b.n.LiveConfig()
	live := liveValues(cfg)
	return api.Settings{Node: b.NodeName(), ETag: settingsETag(live), Live: live, Entries: cfg.Entries()}, nil
}

func liveValues(cfg *conf.Config) map[string]string {
	live := map[string]string{}
	for _, k := range conf.Live {
		live[k], _ = cfg.Get(k)
	}
	return live
}

// settingsETag names a set of live values.
func settingsETag(live map[string]string) string {
	h := sha256.New()
	for _, k := range conf.Live {
		fmt.Fprintf(h, "%s=%q\n", k, live[k])
	}
	return `"` + hex.EncodeToString(h.Sum(nil))[:16] + `"`
}

// errStaleSettings answers a change made on settings that changed since
// the admin read them.
var errStaleSettings = &api.APIError{Status: 412, Message: "the settings changed since you read them (If-Match does not match the ETag): read them again"}

// ChangeSettings changes live keys here, when this node's settings are
// still those ifMatch names, then on every other node.
func (b *Backend) ChangeSettings(ctx context.Context, ifMatch string, changes map[string]string) ([]api.SettingsResult, error) {
	changed, err := b.n.ChangeLive(changes, func(cur *conf.Config) error {
		if settingsETag(liveValues(cur)) != ifMatch {
			return errStaleSettings
		}
		return nil
	})
	if err != nil {
		var ce conf.Errors
		if errors.As(err, &ce) {
			return nil, &api.APIError{Status: 400, Message: err.Error()}
		}
		var e *conf.Error
		if errors.As(err, &e) {
			return nil, &api.APIError{Status: 400, Message: err.Error()}
		}
		return nil, err
	}
	out := []api.SettingsResult{{Node: b.NodeName(), Changed: nonNil(changed)}}
	payload, _ := json.Marshal(changes)
	err = b.askOthers(ctx, kindSettings, payload, func(node string, raw []byte) error {
		var ch []string
		if err := json.Unmarshal(raw, &ch); err != nil {
			return err
		}
		out = append(out, api.SettingsResult{Node: node, Changed: nonNil(ch)})
		return nil
	}, func(node string, err error) {
		out = append(out, api.SettingsResult{Node: node, Changed: []string{}, Error: err.Error()})
	})
	return out, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (b *Backend) localLogs(q api.LogQuery) []api.LogLine {
	ring := nodelog.RingOf(b.n.Logger().Handler())
	if ring == nil {
		return nil
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(q.Level))
	limit := q.Limit
	if limit <= 0 || limit > logLinesMax {
		limit = logLinesMax
	}
	var out []api.LogLine
	for _, e := range ring.Entries(nodelog.Query{MinLevel: lvl, Limit: limit}) {
		out = append(out, api.LogLine{Node: b.NodeName(), Time: e.Time.UTC(), Level: strings.ToLower(e.Level.String()), Text: strings.TrimRight(e.Text, "\n")})
	}
	return out
}

// Logs returns recent log lines of one node, or of every node merged in
// time order.
func (b *Backend) Logs(ctx context.Context, q api.LogQuery) ([]api.LogLine, error) {
	var out []api.LogLine
	if q.Node == "" || q.Node == b.NodeName() {
		out = b.localLogs(q)
	}
	if q.Node != b.NodeName() {
		names, err := b.others(ctx)
		if err != nil {
			return nil, err
		}
		if q.Node != "" && !slices.Contains(names, q.Node) {
			return nil, fmt.Errorf("node %q: %w", q.Node, storage.ErrNotFound)
		}
		payload, _ := json.Marshal(q)
		for _, name := range names {
			if q.Node != "" && name != q.Node {
				continue
			}
			raw, err := b.n.Cluster().Call(ctx, name, kindLogs, payload)
			var theirs []api.LogLine
			if err == nil {
				err = json.Unmarshal(raw, &theirs)
			}
			if err != nil {
				if q.Node != "" {
					return nil, err
				}
				b.log.Warn("admin: a node's log unavailable", "node", name, "err", err)
				continue
			}
			out = append(out, theirs...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if out == nil {
		out = []api.LogLine{}
	}
	return out, nil
}
