package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/placement"
	"github.com/aviary-im/aviary/wire"
)

// echoPlugin is a small service at echo.<domain> built the way group chat
// will be: a key is a room-like address (k@echo.<domain>), its state (who
// joined, how many messages went through) lives on the key's owner
// (plugins/placement), and each node keeps an index of its own sessions
// that joined, which a new owner collects from every node (CallAll) to
// rebuild the member list after the previous owner died.
//
// Presence to k@echo.<domain>/nick joins (the owner answers with presence
// from that address), unavailable presence leaves, and a message with a
// body is sent to every member as type groupchat.
type echoPlugin struct {
	host   plugins.Host
	c      plugins.Cluster
	p      *placement.Placement
	domain string
	stop   []func()

	mu     sync.Mutex
	joined map[string]map[string]bool // this node's index: key → local full JIDs
	rooms  map[string]*echoRoom       // keys hosted here

	rebuilds atomic.Int32
}

type echoRoom struct {
	Members map[string]bool `json:"members"`
	Seq     int             `json:"seq"`
}

func newEcho() *echoPlugin {
	return &echoPlugin{joined: map[string]map[string]bool{}, rooms: map[string]*echoRoom{}}
}

func (e *echoPlugin) ID() string { return "test.echo" }

func (e *echoPlugin) Start(ctx context.Context, h plugins.Host) error {
	e.host, e.c = h, h.Cluster()
	e.domain = "echo." + h.Domain()
	e.p = placement.New(placement.Options{
		Cluster: e.c, Module: e, Name: "rooms", Route: h.Route, LocalKeys: e.localKeys,
		Logger: h.Logger(),
	})
	e.stop = append(e.stop, e.c.Handle("who", e.who))
	e.p.Start()
	release, err := h.ServeDomain(plugins.Service{Domain: e.domain, Name: "Echo", Handle: e.handle})
	if err != nil {
		return err
	}
	e.stop = append(e.stop, release)
	return nil
}

func (e *echoPlugin) Stop(ctx context.Context) error {
	for _, f := range e.stop {
		f()
	}
	if e.p != nil {
		return e.p.Stop(ctx)
	}
	return nil
}

// handle runs on the node where the stanza arrived: it keeps this node's
// index of its own sessions and sends the stanza to the key's owner.
func (e *echoPlugin) handle(ctx context.Context, el *wire.Element) error {
	local, _, _ := strings.Cut(el.To(), "@")
	if !strings.Contains(el.To(), "@") {
		// The service itself answers its disco#info.
		if el.Name == "iq" && el.Type() == "get" && el.Child("query", wire.NSDiscoInfo) != nil {
			q := wire.NewNS("query", wire.NSDiscoInfo).Append(wire.New("identity", "category", "conference", "type", "text", "name", "Echo"))
			e.host.Route(ctx, wire.IQResult(el, q))
			return nil
		}
		return wire.ErrServiceUnavailable
	}
	if el.Name == "presence" && wire.JIDOf(el.From()).Domain() == e.host.Domain() {
		e.mu.Lock()
		if el.Type() == "" {
			if e.joined[local] == nil {
				e.joined[local] = map[string]bool{}
			}
			e.joined[local][el.From()] = true
		} else if el.Type() == "unavailable" {
			delete(e.joined[local], el.From())
			if len(e.joined[local]) == 0 {
				delete(e.joined, local)
			}
		}
		e.mu.Unlock()
	}
	e.p.Dispatch(ctx, local, el)
	return nil
}

func (e *echoPlugin) localKeys() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Collect(maps.Keys(e.joined))
}

// who answers a new owner: this node's sessions that joined the key.
func (e *echoPlugin) who(ctx context.Context, from string, key []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return json.Marshal(slices.Collect(maps.Keys(e.joined[string(key)])))
}

// Rebuild: the message count from what was handed over, the members from
// every node's index (a node that does not answer has lost its sessions).
func (e *echoPlugin) Rebuild(ctx context.Context, key string, handoffs [][]byte) error {
	r := &echoRoom{Members: map[string]bool{}}
	for _, h := range handoffs {
		var old echoRoom
		if err := json.Unmarshal(h, &old); err != nil {
			return err
		}
		r.Seq = max(r.Seq, old.Seq)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a silent node's sessions count as gone
	defer cancel()
	for _, a := range e.c.CallAll(cctx, "who", []byte(key)) {
		if a.Err != nil {
			e.host.Logger().Info("echo: a node did not say who joined", "key", key, "node", a.Node, "err", a.Err)
			continue
		}
		var jids []string
		if err := json.Unmarshal(a.Payload, &jids); err != nil {
			return err
		}
		for _, j := range jids {
			r.Members[j] = true
		}
	}
	e.mu.Lock()
	e.rooms[key] = r
	e.mu.Unlock()
	e.rebuilds.Add(1)
	return nil
}

func (e *echoPlugin) Release(ctx context.Context, key string) ([]byte, error) {
	e.mu.Lock()
	r := e.rooms[key]
	delete(e.rooms, key)
	e.mu.Unlock()
	if r == nil {
		return nil, nil
	}
	return json.Marshal(r)
}

func (e *echoPlugin) Handle(ctx context.Context, key string, el *wire.Element) error {
	e.mu.Lock()
	r := e.rooms[key]
	var send []*wire.Element
	from := el.From()
	switch {
	case el.Name == "presence" && el.Type() == "":
		r.Members[from] = true
		send = append(send, wire.New("presence", "from", el.To(), "to", from))
	case el.Name == "presence" && el.Type() == "unavailable":
		delete(r.Members, from)
	case el.Name == "message" && el.ChildText("body", "") != "":
		r.Seq++
		for _, m := range slices.Sorted(maps.Keys(r.Members)) {
			send = append(send, wire.New("message", "from", key+"@"+e.domain, "to", m, "type", "groupchat", "id", el.ID()).
				Append(wire.New("body").SetText(el.ChildText("body", ""))).
				Append(wire.New("seq", "xmlns", "urn:test:echo").SetText(fmt.Sprint(r.Seq))))
		}
	case el.Name == "iq" && (el.Type() == "get" || el.Type() == "set"):
		e.mu.Unlock()
		return wire.ErrFeatureNotImplemented
	}
	e.mu.Unlock()
	for _, s := range send {
		e.host.Route(ctx, s)
	}
	return nil
}
