package s2s

import (
	"testing"

	"github.com/aviary-im/aviary/wire"
)

// TestServiceDomainFederates: a.test serves rooms.a.test (a plugin's
// service domain). A peer reaches it over a stream addressed to it, and
// its stanzas go out to peers from it, authenticated by dialback
// (self-signed certificates) that the peer verifies by calling
// rooms.a.test back; a subdomain a.test does not serve is still refused
// as a sender, and no peer may claim the service domain as its own.
func TestServiceDomainFederates(t *testing.T) {
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"), secret: "b-secret"})
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"), secret: "a-secret",
		serves: []string{"rooms.a.test"}, hosts: map[string]string{"b.test": b.addr()}})
	b.cfg.S2S.Hosts["a.test"] = a.addr()
	b.cfg.S2S.Hosts["rooms.a.test"] = a.addr()

	b.svc.Send(t.Context(), msg("bob@b.test/desk", "lobby@rooms.a.test", "to the room"))
	if el := a.expect(isBody("to the room"), "message at a"); el.To() != "lobby@rooms.a.test" {
		t.Fatalf("delivered %s", el)
	}
	a.svc.Send(t.Context(), msg("lobby@rooms.a.test/alice", "bob@b.test/desk", "from the room"))
	if el := b.expect(isBody("from the room"), "message at b"); el.From() != "lobby@rooms.a.test/alice" {
		t.Fatalf("delivered %s", el)
	}
	c := a.outConnFor("rooms.a.test", "b.test")
	if c == nil || c.methodNow() != "dialback" {
		t.Fatalf("rooms.a.test → b.test: %v", c)
	}
	// An IQ from the service and its answer come back to it.
	a.svc.Send(t.Context(), wire.New("iq", "from", "rooms.a.test", "to", "b.test", "type", "get", "id", "p1").Append(wire.NewNS("ping", wire.NSPing)))
	if res := a.expect(func(el *wire.Element) bool { return el.ID() == "p1" }, "iq result"); res.Type() != "result" || res.To() != "rooms.a.test" {
		t.Fatalf("answer %s", res)
	}

	a.svc.Send(t.Context(), msg("x@other.a.test", "bob@b.test", "not ours"))
	a.expect(isErrorCond("not-allowed"), "bounce for a domain a does not serve")

	t.Run("stream header answers as the service domain", func(t *testing.T) {
		p := dialRaw(t, a.addr())
		p.open("b.test", "rooms.a.test")
		if p.hdr.From() != "rooms.a.test" {
			t.Fatalf("header from %q", p.hdr.From())
		}
		q := dialRaw(t, a.addr())
		if el := q.open("b.test", "elsewhere.a.test"); el.Name != "stream:error" || streamErrorCondition(el) != "host-unknown" {
			t.Fatalf("stream to a domain a does not serve: %s", el)
		}
	})
	t.Run("nobody claims the service domain", func(t *testing.T) {
		p, f := securedRaw(t, a.addr(), "rooms.a.test", "a.test", domainCert(t, nil, "rooms.a.test"))
		if hasMechanism(f, "EXTERNAL") {
			t.Errorf("EXTERNAL offered to a peer claiming our service domain: %s", f)
		}
		p.send(`<db:result from='rooms.a.test' to='a.test'>` + dialbackKey("x", "a.test", "rooms.a.test", p.hdr.ID()) + `</db:result>`)
		p.expectDialbackResult("error", "not-acceptable")
	})
}

// TestServiceDomainSASLExternal: with a certificate that names the service
// domain too, the stream from it authenticates with SASL EXTERNAL, and
// the peer accepts a stream addressed to it the same way.
func TestServiceDomainSASLExternal(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	aCert := issue(t, ca, "a.test", certNames{dns: []string{"a.test", "rooms.a.test"}})
	a := startNode(t, nodeOpts{domain: "a.test", cert: aCert, caFile: ca.pemPath,
		serves: []string{"rooms.a.test"}, hosts: map[string]string{"b.test": b.addr()}})
	b.cfg.S2S.Hosts["a.test"] = a.addr()
	b.cfg.S2S.Hosts["rooms.a.test"] = a.addr()

	a.svc.Send(t.Context(), msg("lobby@rooms.a.test/alice", "bob@b.test", "certified"))
	b.expect(isBody("certified"), "message at b")
	if c := a.outConnFor("rooms.a.test", "b.test"); c == nil || c.methodNow() != "sasl-external" {
		t.Fatalf("rooms.a.test → b.test authenticated by %v", c)
	}
	b.svc.Send(t.Context(), msg("bob@b.test/desk", "lobby@rooms.a.test", "back"))
	a.expect(isBody("back"), "message at a")
}
