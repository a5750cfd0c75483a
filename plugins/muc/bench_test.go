package muc

import (
	"context"
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// BenchmarkGroupchatFanout measures one groupchat message on its room's
// host: a room of 1,000 occupants spread over three nodes (in-memory
// cluster), the message checked, stamped and sent once per node. What
// the other two nodes then do (decode, one copy per local occupant) runs
// on their goroutines alongside.
//
//	go test -run '^$' -bench GroupchatFanout -benchmem ./plugins/muc
func BenchmarkGroupchatFanout(b *testing.B) {
	net := plugintest.NewNet()
	b.Cleanup(net.Close)
	var hosts []*plugintest.Host
	var muc *Plugin
	for _, name := range []string{"a", "b", "c"} {
		var h *plugintest.Host
		if len(hosts) == 0 {
			h = plugintest.NewHost(b)
		} else {
			h = plugintest.NewHostWithStore(b, hosts[0].St)
		}
		h.Node = net.Join(name)
		h.Cfg.MUC.MessageRate, h.Cfg.MUC.MessageBurst = 1e9, 1e9
		m := h.Start(b, New())
		hosts = append(hosts, h)
		if name == "a" {
			muc = m.Plugin(ID).(*Plugin)
		}
	}
	const n = 1000
	room := "bench"
	r := &Room{Name: room, Config: muc.defaultConfig(), Affiliations: map[string]string{}, Occupants: map[string]*Occupant{}}
	nodes := []string{"a", "b", "c"}
	for i := range n {
		nick := fmt.Sprintf("user%d", i)
		r.Occupants[nick] = &Occupant{Nick: nick, Bare: nick + "@example.com", Role: roleParticipant,
			Sessions: map[string]string{nick + "@example.com/r": nodes[i%3]}}
	}
	muc.mu.Lock()
	muc.rooms[room] = r
	muc.mu.Unlock()
	ctx := context.Background()
	msg := wire.New("message", "type", "groupchat", "id", "m", "from", "user0@example.com/r", "to", room+"@"+muc.domain, nodeAttr, "a").
		Append(wire.New("body").SetText("hello, everyone in the room"))
	drain := func() {
		for _, h := range hosts {
			h.Routed()
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := muc.Handle(ctx, room, msg.Copy()); err != nil {
			b.Fatal(err)
		}
		if i++; i%50 == 0 {
			b.StopTimer()
			drain()
			b.StartTimer()
		}
	}
}
