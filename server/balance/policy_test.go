package balance

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func member(name string, load float64, mod ...func(*cluster.Member)) cluster.Member {
	m := cluster.Member{Name: name, Load: load, Seen: now.Add(-time.Second), ClientAddrs: map[string]string{
		AddrC2S: name + ":5222", AddrC2STLS: name + ":5223", AddrHTTP: name + ":5280",
	}}
	for _, f := range mod {
		f(&m)
	}
	return m
}

func draining(m *cluster.Member) { m.Draining = true }
func shedding(m *cluster.Member) { m.Shedding = true }
func dead(m *cluster.Member)     { m.Seen = now.Add(-time.Minute) }
func noTLS(m *cluster.Member)    { delete(m.ClientAddrs, AddrC2STLS) }
func https(m *cluster.Member)    { m.ClientAddrs[AddrHTTPS] = m.Name + ":5443" }

func TestDecide(t *testing.T) {
	p := Policy{TTL: 10 * time.Second, LoadThreshold: 0.8, Weights: map[string]float64{"heavy": 4, "off": 0}}
	healthy := Self{Name: "me", Sessions: 10, MaxSessions: 100, Load: 0.1}
	drainingSelf := Self{Name: "me", Sessions: 10, Load: 0.1, Draining: true}
	fullSelf := Self{Name: "me", Sessions: 100, MaxSessions: 100, Load: 1}
	overSelf := Self{Name: "me", Sessions: 85, Load: 0.85}
	cases := []struct {
		name    string
		self    Self
		members []cluster.Member
		tr      Transport
		extra   map[string]float64
		want    Decision
	}{
		{"healthy serves", healthy, []cluster.Member{member("b", 0)}, TransportC2S, nil, Decision{}},
		{"draining goes to least loaded", drainingSelf, []cluster.Member{member("me", 0.1), member("b", 0.5), member("c", 0.2)}, TransportC2S, nil,
			Decision{Node: "c", Addr: "c:5222"}},
		{"ties broken by name", drainingSelf, []cluster.Member{member("c", 0.2), member("b", 0.2)}, TransportC2S, nil,
			Decision{Node: "b", Addr: "b:5222"}},
		{"draining skips draining and dead nodes", drainingSelf, []cluster.Member{member("b", 0, draining), member("c", 0, dead), member("d", 0.7)}, TransportC2S, nil,
			Decision{Node: "d", Addr: "d:5222"}},
		{"draining with nowhere to go", drainingSelf, []cluster.Member{member("b", 0, draining), member("c", 0, dead)}, TransportC2S, nil,
			Decision{Refuse: CondSystemShutdown}},
		{"draining alone", drainingSelf, nil, TransportC2S, nil, Decision{Refuse: CondSystemShutdown}},
		{"full redirects", fullSelf, []cluster.Member{member("b", 0.3)}, TransportC2STLS, nil, Decision{Node: "b", Addr: "b:5223"}},
		{"full and every other node over its threshold", fullSelf, []cluster.Member{member("b", 0.8), member("c", 0.95)}, TransportC2S, nil,
			Decision{Refuse: CondResourceConstraint}},
		{"over the soft threshold redirects", overSelf, []cluster.Member{member("b", 0.5)}, TransportC2S, nil, Decision{Node: "b", Addr: "b:5222"}},
		{"over the soft threshold with nowhere to go serves", overSelf, []cluster.Member{member("b", 0.9)}, TransportC2S, nil, Decision{}},
		{"transport the target lacks", drainingSelf, []cluster.Member{member("b", 0, noTLS), member("c", 0.5)}, TransportC2STLS, nil,
			Decision{Node: "c", Addr: "c:5223"}},
		{"weights divide the load", drainingSelf, []cluster.Member{member("heavy", 0.6), member("b", 0.2)}, TransportC2S, nil,
			Decision{Node: "heavy", Addr: "heavy:5222"}},
		{"weight 0 is never chosen", drainingSelf, []cluster.Member{member("off", 0), member("b", 0.5)}, TransportC2S, nil,
			Decision{Node: "b", Addr: "b:5222"}},
		{"load already sent counts", drainingSelf, []cluster.Member{member("b", 0.1), member("c", 0.2)}, TransportC2S, map[string]float64{"b": 0.15},
			Decision{Node: "c", Addr: "c:5222"}},
		{"load already sent can fill a node", drainingSelf, []cluster.Member{member("b", 0.7)}, TransportC2S, map[string]float64{"b": 0.15},
			Decision{Refuse: CondSystemShutdown}},
		{"websocket names the URI", drainingSelf, []cluster.Member{member("b", 0.1, https)}, TransportWebSocket, nil,
			Decision{Node: "b", Addr: "wss://b:5443/xmpp-websocket"}},
		{"bosh names the HTTP host", drainingSelf, []cluster.Member{member("b", 0.1)}, TransportBOSH, nil,
			Decision{Node: "b", Addr: "b:5280"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Decide(tc.self, tc.members, tc.tr, now, tc.extra)
			if got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	p := Policy{TTL: 10 * time.Second, LoadThreshold: 0.9, Weights: map[string]float64{"a": 3}}
	cases := []struct {
		name    string
		members []cluster.Member
		tr      Transport
		status  int
		allowed []string
	}{
		{"all healthy", []cluster.Member{member("a", 0.1), member("b", 0.2), member("c", 0.3)}, TransportC2S, 200, []string{"a", "b", "c"}},
		{"one draining", []cluster.Member{member("a", 0.1, draining), member("b", 0.2), member("c", 0.3)}, TransportC2S, 200, []string{"b", "c"}},
		{"one dead", []cluster.Member{member("a", 0.1, dead), member("b", 0.2), member("c", 0.3)}, TransportC2S, 200, []string{"b", "c"}},
		{"one shedding", []cluster.Member{member("a", 0.1, shedding), member("b", 0.2), member("c", 0.3)}, TransportC2S, 200, []string{"b", "c"}},
		{"all shedding", []cluster.Member{member("a", 0.1, shedding), member("b", 0.2, shedding)}, TransportC2S, http.StatusServiceUnavailable, nil},
		{"one over its threshold", []cluster.Member{member("a", 0.95), member("b", 0.2)}, TransportC2S, 200, []string{"b"}},
		{"all overloaded", []cluster.Member{member("a", 0.95), member("b", 1), member("c", 0.1, draining)}, TransportC2S, http.StatusServiceUnavailable, nil},
		{"all dead", []cluster.Member{member("a", 0.1, dead)}, TransportC2S, http.StatusNotFound, nil},
		{"nobody serves the transport", []cluster.Member{member("a", 0.1, noTLS)}, TransportC2STLS, http.StatusNotFound, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for i := 0; i < 200; i++ {
				x := float64(i) / 200
				m, status := choose(p, tc.members, tc.tr, now, func() float64 { return x })
				if status != tc.status {
					t.Fatalf("status %d, want %d", status, tc.status)
				}
				if status == 200 {
					seen[m.Name] = true
				}
			}
			for _, name := range tc.allowed {
				if !seen[name] {
					t.Errorf("%s never chosen (chosen: %v)", name, seen)
				}
				delete(seen, name)
			}
			if len(seen) > 0 {
				t.Errorf("chose nodes that must not be chosen: %v", seen)
			}
		})
	}
}

func TestChooseFollowsHeadroomAndWeight(t *testing.T) {
	p := Policy{LoadThreshold: 1, Weights: map[string]float64{"big": 3}}
	members := []cluster.Member{member("big", 0.5), member("small", 0.5)}
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		x := float64(i) / 400
		m, _ := choose(p, members, TransportC2S, now, func() float64 { return x })
		counts[m.Name]++
	}
	if counts["big"] != 300 || counts["small"] != 100 {
		t.Errorf("counts %v, want big 300 and small 100 (weight 3:1)", counts)
	}
}

func TestPublicAddr(t *testing.T) {
	cases := []struct{ bound, host, want string }{
		{"127.0.0.1:5222", "h", "127.0.0.1:5222"},
		{"0.0.0.0:5222", "xmpp1.example.com", "xmpp1.example.com:5222"},
		{"[::]:5222", "2001:db8::1", "[2001:db8::1]:5222"},
		{":5222", "h", "h:5222"},
		{"[::]:5222", "", "[::]:5222"},
	}
	for _, tc := range cases {
		t.Run(tc.bound, func(t *testing.T) {
			if got := publicAddr(tc.bound, tc.host); got != tc.want {
				t.Errorf("publicAddr(%q, %q) = %q, want %q", tc.bound, tc.host, got, tc.want)
			}
		})
	}
}

func TestSweepBudget(t *testing.T) {
	cases := []struct {
		rate  int
		every time.Duration
		want  int
	}{
		{1000, 200 * time.Millisecond, 200},
		{5, 20 * time.Millisecond, 1},
		{0, time.Second, math.MaxInt},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.rate, tc.every), func(t *testing.T) {
			if got := sweepBudget(tc.rate, tc.every); got != tc.want {
				t.Errorf("sweepBudget(%d, %v) = %d, want %d", tc.rate, tc.every, got, tc.want)
			}
		})
	}
}
