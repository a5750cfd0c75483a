package muc

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// What the admin console, API and CLI see of the rooms (admin/backend).

// RoomInfo is one room as operators see it.
type RoomInfo struct {
	JID         string         `json:"jid"`
	Name        string         `json:"name,omitempty"`
	Node        string         `json:"node,omitempty"` // its host ("" when no node hosts it: a persistent room nobody is in)
	Subject     string         `json:"subject,omitempty"`
	Persistent  bool           `json:"persistent"`
	Public      bool           `json:"public"`
	MembersOnly bool           `json:"members_only"`
	Moderated   bool           `json:"moderated"`
	Password    bool           `json:"password_protected"`
	Occupants   []OccupantInfo `json:"occupants"`
	Owners      []string       `json:"owners,omitempty"`
}

// OccupantInfo is one occupant of a room.
type OccupantInfo struct {
	Nick        string   `json:"nick"`
	JIDs        []string `json:"jids"`
	Role        string   `json:"role"`
	Affiliation string   `json:"affiliation"`
}

const kindRoomInfo = "roominfo" // Call: the rooms you host, in full

// roomInfo describes a hosted room. It runs outside the room's serial
// Handle, so it reads a copy the room publishes after each stanza.
func (p *Plugin) hostedInfo(ctx context.Context, from string, _ []byte) ([]byte, error) {
	p.mu.Lock()
	out := slices.Collect(maps.Values(p.info))
	p.mu.Unlock()
	return json.Marshal(out)
}

// describe makes the operators' view of a room (on its host, in Handle).
func (p *Plugin) describe(r *Room) RoomInfo {
	ri := RoomInfo{
		JID: r.jid(p), Name: r.Config.Name, Node: p.self, Subject: r.Subject,
		Persistent: r.Config.Persistent, Public: r.Config.Public, MembersOnly: r.Config.MembersOnly,
		Moderated: r.Config.Moderated, Password: r.Config.Password != "", Owners: r.owners(),
		Occupants: []OccupantInfo{},
	}
	for _, o := range r.sortedOccupants() {
		ri.Occupants = append(ri.Occupants, OccupantInfo{
			Nick: o.Nick, JIDs: slices.Sorted(maps.Keys(o.Sessions)), Role: o.Role, Affiliation: r.affiliation(o.Bare),
		})
	}
	return ri
}

// publish records the operators' view of a room after a change.
func (p *Plugin) publish(r *Room) {
	ri := p.describe(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, hosted := p.rooms[r.Name]; hosted {
		p.info[r.Name] = ri
	} else {
		delete(p.info, r.Name)
	}
}

// Rooms lists every room of the cluster: those hosted on any node, with
// their occupants, and the persistent ones nobody is in.
func (p *Plugin) Rooms(ctx context.Context) ([]RoomInfo, error) {
	if p.p == nil {
		return nil, errors.New("muc: group chat is disabled")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	byJID := map[string]RoomInfo{}
	for _, a := range p.c.CallAll(cctx, kindRoomInfo, nil) {
		var rs []RoomInfo
		if a.Err != nil || json.Unmarshal(a.Payload, &rs) != nil {
			continue
		}
		for _, r := range rs {
			byJID[r.JID] = r
		}
	}
	names, err := p.storedRoomNames(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, hosted := byJID[name+"@"+p.domain]; hosted {
			continue
		}
		r, err := p.load(ctx, name)
		if err != nil || r == nil || !r.Config.Persistent {
			continue
		}
		ri := p.describe(r)
		ri.Node = ""
		byJID[ri.JID] = ri
	}
	out := slices.Collect(maps.Values(byJID))
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.JID, b.JID) })
	return out, nil
}

// Destroy destroys a room as its owner would (§10.9): its occupants
// leave with the reason, it is gone from the store and the archive. It
// returns once the room's host was asked; the room goes in order with the
// stanzas before it.
func (p *Plugin) Destroy(ctx context.Context, room, reason string) error {
	if p.p == nil {
		return errors.New("muc: group chat is disabled")
	}
	room = strings.ToLower(strings.TrimSuffix(room, "@"+p.domain))
	if room == "" || strings.ContainsAny(room, "@/ ") {
		return errors.New("muc: not a room of this service: " + room)
	}
	el := wire.New("iq", "type", "set", "from", p.domain, "to", room+"@"+p.domain, "id", newID())
	d := wire.NewNS("destroy", nsInternal)
	if reason != "" {
		d.Append(wire.New("reason").SetText(reason))
	}
	p.p.Dispatch(ctx, room, el.Append(d))
	return nil
}
