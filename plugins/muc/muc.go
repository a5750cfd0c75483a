package muc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/placement"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0045.muc"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the group chat service. Every node runs one; each room is
// hosted (Room state, Handle) by the room's owner node only.
type Plugin struct {
	host   plugins.Host
	c      plugins.Cluster
	p      *placement.Placement
	log    *slog.Logger
	domain string // the service's domain: conference.example.com
	name   string
	self   string // this node's name
	secret []byte // occupant-id key, shared by the cluster through the store
	store  storage.KeyValue
	stop   []func()

	history, maxOccupants int
	create                string
	maxRooms              int     // rooms one account may own when it creates another; -1: no limit
	rate                  float64 // messages a second per occupant
	burst                 int

	// mu guards the maps below. It is never held while a room's Handle
	// runs; rooms themselves are touched only by their key's serial
	// Handle, Rebuild and Release (plugins/placement).
	mu sync.Mutex
	// joined is this node's index of its own sessions in rooms (room →
	// full JID → nick), kept from the room's own answers as they are
	// delivered here, so it holds only confirmed occupants. A new host
	// asks every node for it (kindWho).
	joined map[string]map[string]string
	// roles is, beside joined, the role the room last gave each of those
	// sessions (room → full JID → role): a new host after a crash gives
	// it back (a voice granted or taken by a moderator is not stored).
	roles map[string]map[string]string
	// seen is, per room with occupants here, the nicks this node was told
	// are present: a new host after a crash compares the union with the
	// occupants it found, and tells everyone that the rest left.
	seen map[string]map[string]bool
	// rooms are the rooms hosted here.
	rooms map[string]*Room
	// public is what disco#items shows of the rooms hosted here.
	public map[string]string
	// info is what operators see of the rooms hosted here (admin.go).
	info map[string]RoomInfo
	// closing: the rooms whose goodbye SessionsClosing waits for.
	closing map[string]chan struct{}
}

var _ placement.Module = (*Plugin)(nil)

// New returns the plugin.
func New() *Plugin {
	return &Plugin{
		joined: map[string]map[string]string{}, roles: map[string]map[string]string{}, seen: map[string]map[string]bool{},
		rooms: map[string]*Room{}, public: map[string]string{}, info: map[string]RoomInfo{},
	}
}

func (p *Plugin) ID() string { return ID }

// Messages between the plugin's instances on the nodes.
const (
	kindWho    = "who"    // Call: which of your sessions are in this room, which nicks do you know
	kindFanout = "fanout" // Send: deliver these stanzas to your sessions
	kindRooms  = "rooms"  // Call: the public rooms you host (disco#items)
)

// nodeAttr carries, from the node where a local user's stanza arrived to
// the room's host, the name of that node, so the host knows where each
// occupant's session lives. handle removes it from what arrives from
// outside.
const nodeAttr = "aviary-muc-node"

// Start claims the service domain and starts hosting rooms.
func (p *Plugin) Start(ctx context.Context, h plugins.Host) error {
	cfg := h.Config()
	if !cfg.MUC.On() {
		return nil
	}
	p.host, p.c, p.log = h, h.Cluster(), h.Logger().With("part", "muc")
	p.self = p.c.NodeName()
	p.domain = cfg.MUCDomain()
	p.name = cfg.MUC.Name
	if p.name == "" {
		p.name = "Chatrooms"
	}
	p.history, p.maxOccupants, p.create = cfg.MUC.History, cfg.MUC.MaxOccupants, cfg.MUC.Create
	if p.history == 0 && cfg.MUC.History == 0 && cfg.MUC.MaxOccupants == 0 {
		p.history = 20 // a bare config (tests): the documented defaults
	}
	if p.maxOccupants <= 0 {
		p.maxOccupants = 1000
	}
	if p.create == "" {
		p.create = "local"
	}
	p.maxRooms = cfg.MUC.MaxRoomsPerUser
	if p.maxRooms == 0 {
		p.maxRooms = 100
	}
	p.rate, p.burst = cfg.MUC.MessageRate, cfg.MUC.MessageBurst
	if p.rate <= 0 || p.burst <= 0 {
		p.rate, p.burst = 5, 20
	}
	p.store = h.Store().KeyValue(storeName)
	secret, err := p.loadSecret(ctx)
	if err != nil {
		return err
	}
	p.secret = secret
	p.p = placement.New(placement.Options{
		Cluster: p.c, Module: p, Name: "rooms", Route: h.Route,
		LocalKeys: p.localRooms, Logger: h.Logger(),
	})
	p.stop = append(p.stop,
		p.c.Handle(kindWho, p.who),
		p.c.Handle(kindFanout, p.fanoutHere),
		p.c.Handle(kindRooms, p.hostedPublic),
		p.c.Handle(kindRoomInfo, p.hostedInfo),
		p.c.OnMembersChange(p.membersChanged),
	)
	p.p.Start()
	release, err := h.ServeDomain(plugins.Service{Domain: p.domain, Name: p.name, Handle: p.handle})
	if err != nil {
		_ = p.p.Stop(ctx)
		return err
	}
	p.stop = append(p.stop, release)
	return nil
}

// Stop hands the hosted rooms to their next hosts.
func (p *Plugin) Stop(ctx context.Context) error {
	for _, f := range p.stop {
		f()
	}
	p.stop = nil
	if p.p != nil {
		return p.p.Stop(ctx)
	}
	return nil
}

// SessionsClosing runs when the node stops, before its sessions close.
// When no other node takes the rooms over (this is the last node of the
// cluster, or clustering is off), every room hosted here tells its
// occupants that they are removed because the service shuts down (status
// 332) and empties; otherwise the rooms move with their occupants at Stop
// and nobody is told anything. It returns once every room did, or when
// ctx ends.
func (p *Plugin) SessionsClosing(ctx context.Context) {
	if p.p == nil || len(p.c.Members()) > 1 {
		return
	}
	rooms := p.Hosted()
	if len(rooms) == 0 {
		return
	}
	waits := make([]chan struct{}, len(rooms))
	p.mu.Lock()
	p.closing = map[string]chan struct{}{}
	for i, r := range rooms {
		waits[i] = make(chan struct{})
		p.closing[r] = waits[i]
	}
	p.mu.Unlock()
	for _, r := range rooms {
		el := wire.New("message", "from", p.domain, "to", r+"@"+p.domain, "type", "headline")
		p.p.Dispatch(ctx, r, el.Append(wire.NewNS("shutdown", nsInternal)))
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			p.log.Warn("muc: not every room said goodbye before the node stopped", "err", ctx.Err())
			return
		}
	}
	p.log.Info("muc: the last node stops; occupants told the rooms close (332)", "rooms", len(rooms))
}

// closed signals SessionsClosing that room said goodbye.
func (p *Plugin) closed(room string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.closing[room]; w != nil {
		close(w)
		delete(p.closing, room)
	}
}

// Hosted returns the rooms this node hosts, sorted.
func (p *Plugin) Hosted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.rooms))
}

// Domain returns the service's domain ("" when disabled).
func (p *Plugin) Domain() string { return p.domain }

// loadSecret reads the cluster's occupant-id key, making it on first use.
func (p *Plugin) loadSecret(ctx context.Context) ([]byte, error) {
	for range 3 {
		e, err := p.store.Get(ctx, p.domain, secretKey)
		if err == nil {
			return e.Value, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		v := []byte(hex.EncodeToString(b))
		if _, err := p.store.CompareAndSet(ctx, p.domain, secretKey, 0, v, storage.Limits{}); err == nil {
			return v, nil
		} else if !errors.Is(err, storage.ErrConflict) {
			return nil, err
		}
	}
	return nil, errors.New("muc: cannot agree on the occupant-id key")
}

// handle runs on the node where the stanza arrived (the router's
// goroutine): it answers the service's own IQs, notes the node of a local
// sender and sends the stanza to the room's host.
func (p *Plugin) handle(ctx context.Context, el *wire.Element) error {
	el.RemoveAttr(nodeAttr)
	room, _, _ := strings.Cut(el.To(), "@")
	if !strings.Contains(el.To(), "@") {
		return p.serviceStanza(ctx, el)
	}
	room = strings.ToLower(room)
	if room == "" || strings.ContainsAny(room, "/ ") {
		return wire.ErrJIDMalformed
	}
	if domainOf(el.From()) == strings.ToLower(p.host.Domain()) {
		el.SetAttr(nodeAttr, p.self)
	}
	p.p.Dispatch(ctx, room, el)
	return nil
}

// domainOf returns the lower-case domain of a JID string.
func domainOf(j string) string {
	j, _, _ = strings.Cut(j, "/")
	if _, d, ok := strings.Cut(j, "@"); ok {
		return strings.ToLower(d)
	}
	return strings.ToLower(j)
}

// localRooms lists the rooms this node's sessions are in (placement
// tells their new host after a membership change).
func (p *Plugin) localRooms() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Keys(p.joined))
}

// whoAnswer is a node's answer to kindWho.
type whoAnswer struct {
	// Occupants: full JID → nick, this node's sessions in the room.
	Occupants map[string]string `json:"occupants"`
	// Seen: nicks this node was told are in the room.
	Seen []string `json:"seen"`
	// Roles: full JID → the role the room last gave that session (absent
	// from nodes older than it).
	Roles map[string]string `json:"roles,omitempty"`
}

func (p *Plugin) who(ctx context.Context, from string, room []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := string(room)
	return json.Marshal(whoAnswer{Occupants: p.joined[r], Seen: slices.Sorted(maps.Keys(p.seen[r])), Roles: p.roles[r]})
}

// fanout is one Send to a node: stanzas (wire binary form) and, for each,
// the full JIDs to deliver a copy to.
type fanout struct {
	Els [][]byte   `json:"els"`
	To  [][]string `json:"to"`
}

// fanoutHere delivers a host's batch to this node's sessions.
func (p *Plugin) fanoutHere(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var f fanout
	if err := json.Unmarshal(payload, &f); err != nil {
		return nil, err
	}
	for i, b := range f.Els {
		el, _, err := wire.DecodeBinary(b)
		if err != nil || i >= len(f.To) {
			continue
		}
		for _, to := range f.To[i] {
			c := el.Copy()
			c.SetAttr("to", to)
			p.deliverLocal(ctx, c)
		}
	}
	return nil, nil
}

// deliverLocal routes a stanza from a room to a session of this node,
// keeping the node's index: a room's presence about the recipient itself
// (status 110) says it is in the room under that nick, or no longer is.
func (p *Plugin) deliverLocal(ctx context.Context, el *wire.Element) {
	if el.Name == "presence" {
		p.noteLocal(el)
	}
	p.host.Route(ctx, el)
}

func (p *Plugin) noteLocal(el *wire.Element) {
	from := el.From()
	bare, nick, _ := strings.Cut(from, "/")
	room, _, _ := strings.Cut(bare, "@")
	to := el.To()
	x := el.Child("x", NSUser)
	self := x != nil && hasStatus(x, 110)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case el.Type() == "error" && nick != "":
		// A refused join: the session is not in the room under that nick.
		if p.joined[room][to] == nick {
			delete(p.joined[room], to)
			delete(p.roles[room], to)
		}
	case el.Type() == "unavailable":
		// The session left under that nick (left, kicked, banned, the
		// room destroyed, or a nick change that an available presence
		// from the new nick follows).
		if self || p.joined[room][to] == nick {
			delete(p.joined[room], to)
			delete(p.roles[room], to)
		}
		if p.seen[room] != nil {
			delete(p.seen[room], nick)
		}
	case el.Type() == "" && nick != "":
		if self {
			if p.joined[room] == nil {
				p.joined[room] = map[string]string{}
			}
			p.joined[room][to] = nick
			if role := x.Child("item", "").Attr("role"); role != "" {
				if p.roles[room] == nil {
					p.roles[room] = map[string]string{}
				}
				p.roles[room][to] = role
			}
		}
		if p.seen[room] == nil {
			p.seen[room] = map[string]bool{}
		}
		p.seen[room][nick] = true
	}
	if len(p.joined[room]) == 0 {
		delete(p.joined, room)
		delete(p.roles, room)
		delete(p.seen, room)
	}
}

// membersChanged: occupants whose node left the cluster lost their
// sessions with it; each hosted room is told to drop them.
func (p *Plugin) membersChanged(ch plugins.MembersChange) {
	gone := map[string]bool{}
	for _, m := range ch.Before {
		gone[m.Name] = true
	}
	for _, m := range ch.After {
		delete(gone, m.Name)
	}
	if len(gone) == 0 {
		return
	}
	p.mu.Lock()
	rooms := slices.Collect(maps.Keys(p.rooms))
	p.mu.Unlock()
	nodes := slices.Sorted(maps.Keys(gone))
	for _, r := range rooms {
		el := wire.New("message", "from", p.domain, "to", r+"@"+p.domain, "type", "headline")
		el.Append(wire.NewNS("nodes-gone", nsInternal).SetText(strings.Join(nodes, " ")))
		p.p.Dispatch(context.Background(), r, el)
	}
}

// nsInternal marks the host's own control stanzas; handle refuses it from
// outside (it strips nodeAttr, and Handle ignores the element unless it
// came from the service itself).
const nsInternal = "urn:aviary:muc:internal"

// hostedPublic answers kindRooms: the public rooms hosted here.
func (p *Plugin) hostedPublic(ctx context.Context, from string, _ []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(p.public)
}

// serviceStanza answers stanzas to the service's own domain.
func (p *Plugin) serviceStanza(ctx context.Context, el *wire.Element) error {
	if el.Name != "iq" {
		if el.Name == "message" && el.Type() != "error" {
			return wire.ErrServiceUnavailable
		}
		return nil
	}
	if el.Type() != "get" && el.Type() != "set" {
		return nil
	}
	q := el.FirstChild()
	if q == nil {
		return wire.ErrBadRequest
	}
	switch {
	case el.Type() == "get" && q.Name == "query" && q.NS() == wire.NSDiscoInfo && q.Attr("node") == "":
		res := wire.NewNS("query", wire.NSDiscoInfo).
			Append(wire.New("identity", "category", "conference", "type", "text", "name", p.name))
		for _, f := range []string{wire.NSDiscoInfo, wire.NSDiscoItems, NS, NSUnique, NSOccupantID, wire.NSPing} {
			res.Append(wire.New("feature", "var", f))
		}
		p.host.Route(ctx, wire.IQResult(el, res))
	case el.Type() == "get" && q.Name == "query" && q.NS() == wire.NSDiscoItems:
		el = el.Copy()
		go p.listRooms(el) // asks every node: off the router's goroutine
	case el.Type() == "get" && q.Name == "unique" && q.NS() == NSUnique:
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		p.host.Route(ctx, wire.IQResult(el, wire.NewNS("unique", NSUnique).SetText(hex.EncodeToString(b))))
	case el.Type() == "get" && q.Name == "ping" && q.NS() == wire.NSPing:
		p.host.Route(ctx, wire.IQResult(el, nil))
	default:
		return wire.ErrServiceUnavailable
	}
	return nil
}

// listRooms answers the service's disco#items: the public rooms, hosted
// or persistent, across the cluster.
func (p *Plugin) listRooms(iq *wire.Element) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := map[string]string{}
	for _, a := range p.c.CallAll(ctx, kindRooms, nil) {
		var m map[string]string
		if a.Err == nil && json.Unmarshal(a.Payload, &m) == nil {
			maps.Copy(names, m)
		}
	}
	stored, err := p.storedRoomNames(ctx)
	if err == nil {
		for _, room := range stored {
			if _, hosted := names[room]; hosted {
				continue
			}
			if r, err := p.load(ctx, room); err == nil && r != nil && r.Config.Public && r.Config.Persistent && !r.Locked {
				names[room] = r.Config.Name
			}
		}
	}
	q := wire.NewNS("query", wire.NSDiscoItems)
	rooms := slices.Collect(maps.Keys(names))
	sort.Strings(rooms)
	for _, r := range rooms {
		it := wire.New("item", "jid", r+"@"+p.domain)
		if n := names[r]; n != "" {
			it.SetAttr("name", n)
		} else {
			it.SetAttr("name", r)
		}
		q.Append(it)
	}
	p.host.Route(ctx, wire.IQResult(iq, q))
}
