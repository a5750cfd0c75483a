package muc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Namespaces.
const (
	NS           = "http://jabber.org/protocol/muc"
	NSUser       = "http://jabber.org/protocol/muc#user"
	NSAdmin      = "http://jabber.org/protocol/muc#admin"
	NSOwner      = "http://jabber.org/protocol/muc#owner"
	NSUnique     = "http://jabber.org/protocol/muc#unique"
	NSRoomConfig = "http://jabber.org/protocol/muc#roomconfig"
	NSRoomInfo   = "http://jabber.org/protocol/muc#roominfo"
	NSOccupantID = "urn:xmpp:occupant-id:0" // XEP-0421
	NSData       = "jabber:x:data"
	NSConference = "jabber:x:conference" // XEP-0249
)

// The module stores: one key/value store, owner the service's domain
// (which cannot be an account's bare JID), a key per persistent room.
const (
	storeName     = "muc"
	secretKey     = "secret"
	roomKeyPrefix = "room:"
	// ownedKeyPrefix+bare lists the rooms the user created (claimRoom).
	ownedKeyPrefix = "owned:"
)

// Affiliations and roles (XEP-0045 §5).
const (
	affOwner   = "owner"
	affAdmin   = "admin"
	affMember  = "member"
	affNone    = "none"
	affOutcast = "outcast"

	roleModerator   = "moderator"
	roleParticipant = "participant"
	roleVisitor     = "visitor"
	roleNone        = "none"
)

// Config is a room's configuration (the muc#roomconfig form).
type Config struct {
	Name          string   `json:"name,omitempty"`
	Description   string   `json:"description,omitempty"`
	Lang          string   `json:"lang,omitempty"`
	Persistent    bool     `json:"persistent"`
	Public        bool     `json:"public"`
	MembersOnly   bool     `json:"members_only"`
	Moderated     bool     `json:"moderated"`
	Password      string   `json:"password,omitempty"`
	MaxUsers      int      `json:"max_users,omitempty"` // 0: the service's limit
	WhoIs         string   `json:"whois"`               // "moderators" or "anyone"
	ChangeSubject bool     `json:"change_subject"`
	AllowInvites  bool     `json:"allow_invites"`
	AllowPM       string   `json:"allow_pm"` // anyone, participants, moderators, none
	Logging       bool     `json:"logging"`
	HistoryLength int      `json:"history_length"`
	GetMemberList []string `json:"get_member_list,omitempty"`
	PresenceRoles []string `json:"presence_roles,omitempty"` // presencebroadcast
	ChangeNick    bool     `json:"change_nick"`
	VoiceRequests bool     `json:"voice_requests"`
	PubSub        string   `json:"pubsub,omitempty"`
	// ArchiveExpires is how many seconds the room's archive keeps a
	// message (muc#roomconfig_archive_expires); 0 keeps it as long as the
	// server keeps every archive (mam.expire_after).
	ArchiveExpires int64 `json:"archive_expires,omitempty"`
}

// defaultConfig is a new room's configuration.
func (p *Plugin) defaultConfig() Config {
	return Config{
		Public: true, WhoIs: "moderators", ChangeSubject: false, AllowInvites: false,
		AllowPM: "anyone", HistoryLength: p.history, ChangeNick: true,
		GetMemberList: []string{roleModerator, roleParticipant, roleVisitor},
		PresenceRoles: []string{roleModerator, roleParticipant, roleVisitor},
	}
}

// Room is a room's state on its host.
type Room struct {
	Name         string            `json:"name"` // the localpart
	Config       Config            `json:"config"`
	Affiliations map[string]string `json:"affiliations"` // bare JID → owner, admin, member, outcast
	AffNicks     map[string]string `json:"aff_nicks,omitempty"`
	Subject      string            `json:"subject,omitempty"`
	SubjectFrom  string            `json:"subject_from,omitempty"`
	SubjectAt    time.Time         `json:"subject_at,omitzero"`
	Created      time.Time         `json:"created"`
	// Locked: created and not yet configured (XEP-0045 §10.1); only its
	// owner may enter.
	Locked bool `json:"locked,omitempty"`

	// What lives only on the host (and in the hand-over).
	Occupants map[string]*Occupant `json:"occupants,omitempty"` // nick → occupant
	History   []HistoryItem        `json:"history,omitempty"`
}

// Occupant is one nick in the room: one or more sessions of one user.
type Occupant struct {
	Nick string `json:"nick"`
	Bare string `json:"bare"`
	Role string `json:"role"`
	// Sessions: full JID → the node that holds it ("" for another
	// domain's users, reached over s2s).
	Sessions map[string]string `json:"sessions"`
	// Presence is the occupant's last available presence (no to/from).
	Presence []byte `json:"presence,omitempty"`

	// The occupant's message rate (a token bucket), on this host only.
	tokens float64
	filled time.Time
}

// allow takes a token for one message: false when the occupant sends
// faster than rate a second past burst.
func (o *Occupant) allow(now time.Time, rate float64, burst int) bool {
	if o.filled.IsZero() {
		o.tokens = float64(burst)
	} else {
		o.tokens = min(float64(burst), o.tokens+now.Sub(o.filled).Seconds()*rate)
	}
	o.filled = now
	if o.tokens < 1 {
		return false
	}
	o.tokens--
	return true
}

// HistoryItem is one message kept for new occupants.
type HistoryItem struct {
	At  time.Time `json:"at"`
	El  []byte    `json:"el"` // wire binary, from the occupant's room JID, no 'to'
	Len int       `json:"len"`
}

// storedRoom is what a room keeps in the store.
type storedRoom struct {
	Config       Config            `json:"config"`
	Affiliations map[string]string `json:"affiliations"`
	AffNicks     map[string]string `json:"aff_nicks,omitempty"`
	Subject      string            `json:"subject,omitempty"`
	SubjectFrom  string            `json:"subject_from,omitempty"`
	SubjectAt    time.Time         `json:"subject_at,omitzero"`
	Created      time.Time         `json:"created"`
	// Locked: saved too, so that a new host after a crash keeps the room
	// locked for its owner, who is still configuring it, instead of
	// rebuilding it open to everyone with no owner.
	Locked bool `json:"locked,omitempty"`
}

func (r *Room) jid(p *Plugin) string { return r.Name + "@" + p.domain }

func (r *Room) affiliation(bare string) string {
	if a, ok := r.Affiliations[bare]; ok {
		return a
	}
	return affNone
}

// defaultRole is the role a user of that affiliation enters with.
func (r *Room) defaultRole(aff string) string {
	switch aff {
	case affOwner, affAdmin:
		return roleModerator
	case affMember:
		return roleParticipant
	case affOutcast:
		return roleNone
	}
	if r.Config.Moderated {
		return roleVisitor
	}
	return roleParticipant
}

// recoveredRole is the role of an occupant a new host learns of from its
// node: the one the room last gave it (a moderator's voice or devoice is
// not stored, and must survive a crash of the host), unless its
// affiliation, which is stored, decides: owners and admins are always
// moderators, outcasts never in the room.
func (r *Room) recoveredRole(bare, reported string) string {
	aff := r.affiliation(bare)
	def := r.defaultRole(aff)
	if def == roleModerator || def == roleNone {
		return def
	}
	switch reported {
	case roleModerator, roleParticipant, roleVisitor:
		return reported
	}
	return def
}

// bySession returns the occupant a full JID is in the room as.
func (r *Room) bySession(full string) *Occupant {
	for _, o := range r.Occupants {
		if _, ok := o.Sessions[full]; ok {
			return o
		}
	}
	return nil
}

func (r *Room) byBare(bare string) []*Occupant {
	var out []*Occupant
	for _, o := range r.Occupants {
		if o.Bare == bare {
			out = append(out, o)
		}
	}
	return out
}

func (r *Room) owners() []string {
	var out []string
	for j, a := range r.Affiliations {
		if a == affOwner {
			out = append(out, j)
		}
	}
	slices.Sort(out)
	return out
}

// sortedOccupants returns the occupants by nick.
func (r *Room) sortedOccupants() []*Occupant {
	out := make([]*Occupant, 0, len(r.Occupants))
	for _, n := range slices.Sorted(maps.Keys(r.Occupants)) {
		out = append(out, r.Occupants[n])
	}
	return out
}

func (r *Room) maxUsers(p *Plugin) int {
	if r.Config.MaxUsers > 0 && r.Config.MaxUsers < p.maxOccupants {
		return r.Config.MaxUsers
	}
	return p.maxOccupants
}

func (r *Room) nonAnonymous() bool { return r.Config.WhoIs == "anyone" }

// occupantID is the XEP-0421 id of a user in a room: stable for the bare
// JID, the same on every node (the key is shared through the store), and
// not reversible to the JID.
func (p *Plugin) occupantID(room, bare string) string {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte(room))
	m.Write([]byte{0})
	m.Write([]byte(bare))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// load reads a persistent room; nil when it is not stored.
func (p *Plugin) load(ctx context.Context, room string) (*Room, error) {
	e, err := p.store.Get(ctx, p.domain, roomKeyPrefix+room)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s storedRoom
	if err := json.Unmarshal(e.Value, &s); err != nil {
		return nil, err
	}
	r := &Room{
		Name: room, Config: s.Config, Affiliations: s.Affiliations, AffNicks: s.AffNicks,
		Subject: s.Subject, SubjectFrom: s.SubjectFrom, SubjectAt: s.SubjectAt, Created: s.Created,
		Locked: s.Locked, Occupants: map[string]*Occupant{},
	}
	if r.Affiliations == nil {
		r.Affiliations = map[string]string{}
	}
	return r, nil
}

// storedRoomNames lists the rooms in the store (persistent ones, and
// temporary ones until they empty).
func (p *Plugin) storedRoomNames(ctx context.Context) ([]string, error) {
	keys, err := p.store.Keys(ctx, p.domain)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if name, ok := strings.CutPrefix(k, roomKeyPrefix); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// ownedRooms lists the stored rooms whose owners include bare: one Keys
// read and one Get per stored room (BenchmarkOwnedRooms: about 0.3 s for
// 1,000 rooms on PostgreSQL), so claimRoom does it once per account only.
func (p *Plugin) ownedRooms(ctx context.Context, bare string) ([]string, error) {
	names, err := p.storedRoomNames(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range names {
		if owned, err := p.ownsStored(ctx, bare, name); err != nil {
			return nil, err
		} else if owned {
			out = append(out, name)
		}
	}
	return out, nil
}

// ownsStored reports whether the stored room names bare among its owners.
func (p *Plugin) ownsStored(ctx context.Context, bare, room string) (bool, error) {
	r, err := p.load(ctx, room)
	if err != nil || r == nil {
		return false, err
	}
	return r.Affiliations[bare] == affOwner, nil
}

// errAtLimit: the user owns as many rooms as one may.
var errAtLimit = errors.New("muc: the user owns as many rooms as one may")

// claimGrace is how long a claimed room counts while it is not in the
// store: an instant room is written just after its claim, a reserved one
// once its owner submits the configuration form.
const claimGrace = 10 * time.Minute

// ownedEntry is one room in a user's list of created rooms; At is when
// it was claimed (zero for rooms found in the store).
type ownedEntry struct {
	Room string    `json:"room"`
	At   time.Time `json:"at,omitzero"`
}

// claimRoom records that bare creates room, unless bare owns limit rooms
// already (errAtLimit, with how many). The rooms a user created are
// listed under ownedKeyPrefix+bare, written with compare-and-swap so two
// creations on two hosts at once cannot both take the last slot. The
// list is written before the room, so a crash between the two leaves an
// entry too many, never one too few. drop takes a room that is gone out
// of its owners' lists; when the list is full, the entries are checked
// against the store (at most limit reads, only then), and those whose
// room is gone or no longer names the user owner are dropped, unless
// claimed less than claimGrace ago (the room may not be written yet).
// The first claim of an account (no list yet: a new user, or rooms from
// before the list existed) lists its rooms from the whole store once.
func (p *Plugin) claimRoom(ctx context.Context, bare, room string, limit int) (int, error) {
	n := 0
	now := time.Now()
	err := storage.UpdateKV(ctx, p.store, p.domain, ownedKeyPrefix+bare, storage.Limits{},
		func(old []byte, exists bool) ([]byte, bool, error) {
			var list []ownedEntry
			if !exists || json.Unmarshal(old, &list) != nil {
				names, err := p.ownedRooms(ctx, bare)
				if err != nil {
					return nil, false, err
				}
				list = nil
				for _, name := range names {
					list = append(list, ownedEntry{Room: name})
				}
			}
			list = slices.DeleteFunc(list, func(e ownedEntry) bool { return e.Room == room })
			if len(list) >= limit {
				var kept []ownedEntry
				for _, e := range list {
					owned, err := p.ownsStored(ctx, bare, e.Room)
					if err != nil {
						return nil, false, err
					}
					if owned || now.Sub(e.At) < claimGrace {
						kept = append(kept, e)
					}
				}
				list = kept
			}
			if n = len(list); n >= limit {
				return nil, false, errAtLimit
			}
			b, err := json.Marshal(append(list, ownedEntry{Room: room, At: now.UTC()}))
			return b, false, err
		})
	return n, err
}

// unclaimRoom takes a room that is gone out of its owners' lists of
// created rooms (only lists that exist: an account's first claim builds
// its list from the store).
func (p *Plugin) unclaimRoom(ctx context.Context, r *Room) {
	for _, bare := range r.owners() {
		err := storage.UpdateKV(ctx, p.store, p.domain, ownedKeyPrefix+bare, storage.Limits{},
			func(old []byte, exists bool) ([]byte, bool, error) {
				var list []ownedEntry
				if !exists || json.Unmarshal(old, &list) != nil {
					return nil, false, errNoList
				}
				b, err := json.Marshal(slices.DeleteFunc(list, func(e ownedEntry) bool { return e.Room == r.Name }))
				return b, false, err
			})
		if err != nil && !errors.Is(err, errNoList) {
			p.log.Warn("muc: a room that is gone still counts for its owner until their list is full", "room", r.Name, "owner", bare, "err", err)
		}
	}
}

var errNoList = errors.New("muc: no list of created rooms")

// save writes a room's configuration, affiliations and subject. Every
// room is written, temporary and still locked ones too (until they
// empty), so that a new host after a crash finds what its owner
// configured, or that it is still the owner's to configure.
func (p *Plugin) save(ctx context.Context, r *Room) error {
	b, err := json.Marshal(storedRoom{
		Config: r.Config, Affiliations: r.Affiliations, AffNicks: r.AffNicks,
		Subject: r.Subject, SubjectFrom: r.SubjectFrom, SubjectAt: r.SubjectAt, Created: r.Created,
		Locked: r.Locked,
	})
	if err != nil {
		return err
	}
	_, err = p.store.Set(ctx, p.domain, roomKeyPrefix+r.Name, b, storage.Limits{})
	return err
}

// Rebuild makes this node the room's host: the store, what the previous
// hosts handed over, and every node's sessions in the room.
func (p *Plugin) Rebuild(ctx context.Context, room string, handoffs [][]byte) error {
	r, err := p.load(ctx, room)
	if err != nil {
		return err
	}
	var prev *Room
	for _, h := range handoffs {
		if len(h) == 0 {
			continue
		}
		var o Room
		if err := json.Unmarshal(h, &o); err != nil {
			return err
		}
		if prev == nil {
			prev = &o
			continue
		}
		// Clustering came back on: several nodes hosted the room. Keep
		// the first (this node's own) state and merge the others'
		// occupants and history.
		for n, occ := range o.Occupants {
			if _, ok := prev.Occupants[n]; !ok {
				prev.Occupants[n] = occ
			}
		}
		prev.History = append(prev.History, o.History...)
		slices.SortStableFunc(prev.History, func(a, b HistoryItem) int { return a.At.Compare(b.At) })
	}
	switch {
	case prev != nil:
		if r != nil { // the store is the truth for what it holds
			prev.Config, prev.Affiliations, prev.AffNicks = r.Config, r.Affiliations, r.AffNicks
		}
		r = prev
		if r.Occupants == nil {
			r.Occupants = map[string]*Occupant{}
		}
		if r.Affiliations == nil {
			r.Affiliations = map[string]string{}
		}
	}
	found, departed := p.ask(ctx, room)
	if r == nil && len(found) > 0 {
		// A temporary room whose host died: it existed, its occupants are
		// still here. Recreate it open, as it was before it was configured
		// differently (its configuration died with the host).
		r = &Room{Name: room, Config: p.defaultConfig(), Affiliations: map[string]string{}, Occupants: map[string]*Occupant{}, Created: time.Now()}
	}
	if r != nil {
		p.mergeOccupants(r, found)
		if prev == nil {
			p.historyFromArchive(ctx, r) // the host died with the history
		}
		r.History = trimHistory(r.History, p.history)
	}
	p.mu.Lock()
	if r != nil {
		p.rooms[room] = r
	} else {
		delete(p.rooms, room)
	}
	p.mu.Unlock()
	if r != nil {
		p.updatePublic(r)
		p.publish(r)
		if len(handoffs) > 1 {
			// Clustering came back on and the copies merged: while apart,
			// each copy told its occupants that the others' occupants had
			// left. Everyone learns again who is in the room.
			b := p.newOutbox()
			for _, o := range r.sortedOccupants() {
				for _, other := range r.sortedOccupants() {
					if other != o && r.broadcastsPresence(o.Role) {
						b.add(other, p.occupantPresence(r, o, other))
					}
				}
			}
			b.flush(ctx)
		}
		// Nicks the nodes still show that have no session left: their
		// sessions died with a node. Everyone learns they left.
		for _, n := range departed {
			if _, ok := r.Occupants[n]; !ok {
				p.broadcast(ctx, r, func(*Occupant) *wire.Element {
					return p.leavePresence(r, &Occupant{Nick: n, Role: roleNone}, affNone, nil, "")
				})
			}
		}
	}
	return nil
}

// found is one session a node reported in a room.
type found struct {
	node, full, nick string
	role             string // the role the room last gave it; "" unknown
}

// ask collects every node's sessions in the room and the nicks they know.
func (p *Plugin) ask(ctx context.Context, room string) ([]found, []string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a silent node's sessions count as gone
	defer cancel()
	var out []found
	seen := map[string]bool{}
	for _, a := range p.c.CallAll(cctx, kindWho, []byte(room)) {
		if a.Err != nil {
			p.log.Info("muc: a node did not say who is in the room", "room", room, "node", a.Node, "err", a.Err)
			continue
		}
		var w whoAnswer
		if err := json.Unmarshal(a.Payload, &w); err != nil {
			continue
		}
		for full, nick := range w.Occupants {
			out = append(out, found{a.Node, full, nick, w.Roles[full]})
		}
		for _, n := range w.Seen {
			seen[n] = true
		}
	}
	slices.SortFunc(out, func(a, b found) int { return strings.Compare(a.full, b.full) })
	return out, slices.Sorted(maps.Keys(seen))
}

// mergeOccupants makes the room's occupants match what the nodes hold:
// sessions of this domain that no node reports are gone; reported ones
// are added (with their affiliation's role when the room did not know
// them). Sessions of other domains stay as they were.
func (p *Plugin) mergeOccupants(r *Room, fs []found) {
	local := "@" + strings.ToLower(p.host.Domain()) + "/"
	reported := map[string]found{}
	for _, f := range fs {
		reported[f.full] = f
	}
	for nick, o := range r.Occupants {
		for full := range o.Sessions {
			if !strings.Contains(strings.ToLower(full), local) {
				continue
			}
			if f, ok := reported[full]; ok && f.nick == nick {
				o.Sessions[full] = f.node
				delete(reported, full)
				continue
			}
			delete(o.Sessions, full)
		}
		if len(o.Sessions) == 0 {
			delete(r.Occupants, nick)
		}
	}
	for _, f := range fs {
		if _, ok := reported[f.full]; !ok {
			continue
		}
		o := r.Occupants[f.nick]
		bare := bareOf(f.full)
		if o == nil {
			o = &Occupant{Nick: f.nick, Bare: bare, Role: r.recoveredRole(bare, f.role), Sessions: map[string]string{}}
			r.Occupants[f.nick] = o
		}
		if o.Bare == bare {
			o.Sessions[f.full] = f.node
		}
	}
}

// Release hands the room over: everything but what the store has.
func (p *Plugin) Release(ctx context.Context, room string) ([]byte, error) {
	p.mu.Lock()
	r := p.rooms[room]
	delete(p.rooms, room)
	delete(p.public, room)
	delete(p.info, room)
	p.mu.Unlock()
	if r == nil {
		return nil, nil
	}
	return json.Marshal(r)
}

// updatePublic records what disco#items shows of a hosted room.
func (p *Plugin) updatePublic(r *Room) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Config.Public && !r.Locked {
		p.public[r.Name] = r.Config.Name
	} else {
		delete(p.public, r.Name)
	}
}

// drop forgets a room that no longer exists (destroyed, or temporary and
// empty), in the store too.
func (p *Plugin) drop(ctx context.Context, r *Room) {
	p.mu.Lock()
	delete(p.rooms, r.Name)
	delete(p.public, r.Name)
	delete(p.info, r.Name)
	p.mu.Unlock()
	p.p.Forget(r.Name)
	if err := p.store.Delete(ctx, p.domain, roomKeyPrefix+r.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		p.log.Warn("muc: a room that is gone stays in the store", "room", r.Name, "err", err)
	}
	if p.maxRooms >= 0 {
		p.unclaimRoom(ctx, r)
	}
}

func trimHistory(h []HistoryItem, n int) []HistoryItem {
	if len(h) > n {
		h = slices.Clone(h[len(h)-n:])
	}
	return h
}

func bareOf(full string) string {
	b, _, _ := strings.Cut(full, "/")
	return strings.ToLower(b)
}
