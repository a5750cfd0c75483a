package backend

import (
	"context"
	"errors"
	"strings"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/storage"
)

// rooms reports the group chat service (plugins/muc) to the admin API.
type rooms struct{ n *server.Node }

var _ api.RoomSource = rooms{}

var errNoGroupChat = errors.New("backend: group chat (xep0045.muc) is not running on this node")

func (r rooms) plugin() (*muc.Plugin, error) {
	p, ok := r.n.Plugins().Plugin(muc.ID).(*muc.Plugin)
	if !ok || p == nil || p.Domain() == "" {
		return nil, errNoGroupChat
	}
	return p, nil
}

func (r rooms) Rooms(ctx context.Context) ([]api.Room, error) {
	p, err := r.plugin()
	if err != nil {
		return nil, err
	}
	infos, err := p.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Room, 0, len(infos))
	for _, i := range infos {
		room := api.Room{
			JID: i.JID, Name: i.Name, Occupants: len(i.Occupants), Node: i.Node, Public: i.Public, Persist: i.Persistent,
			MembersOnly: i.MembersOnly, Moderated: i.Moderated, Password: i.Password, Subject: i.Subject, Owners: i.Owners,
		}
		for _, o := range i.Occupants {
			room.People = append(room.People, api.RoomOccupant{Nick: o.Nick, JIDs: o.JIDs, Role: o.Role, Affiliation: o.Affiliation})
		}
		out = append(out, room)
	}
	return out, nil
}

func (r rooms) DestroyRoom(ctx context.Context, jid, reason string) error {
	p, err := r.plugin()
	if err != nil {
		return err
	}
	name, domain, _ := strings.Cut(strings.ToLower(jid), "@")
	if domain != p.Domain() {
		return storage.ErrNotFound
	}
	list, err := p.Rooms(ctx)
	if err != nil {
		return err
	}
	for _, i := range list {
		if i.JID == name+"@"+domain {
			return p.Destroy(ctx, name, reason)
		}
	}
	return storage.ErrNotFound
}
