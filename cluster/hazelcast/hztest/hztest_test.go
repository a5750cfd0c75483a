package hztest

import (
	"net"
	"strings"
	"testing"
)

func dialable(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestStartMember(t *testing.T) {
	m := StartMember(t, "hztest-one")
	if !m.Running() || !dialable(m.Addr()) {
		t.Fatalf("member not running at %s", m.Addr())
	}
	if !strings.Contains(m.Log(), "Cluster name: hztest-one") {
		t.Fatalf("log lacks the cluster name:\n%s", m.Log())
	}
	m.Restart(t)
	if !m.Running() || !dialable(m.Addr()) {
		t.Fatal("member not running after restart")
	}
	m.Kill()
	if m.Running() {
		t.Fatal("member running after Kill")
	}
}

func TestStartMembersJoin(t *testing.T) {
	ms := StartMembers(t, "hztest-two", 2)
	for _, m := range ms {
		if !strings.Contains(m.Log(), "Members {size:2,") {
			t.Fatalf("member %s did not join:\n%s", m.Addr(), m.Log())
		}
	}
	ms[1].Stop()
	if ms[1].Running() {
		t.Fatal("member running after Stop")
	}
}
