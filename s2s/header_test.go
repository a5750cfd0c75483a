package s2s

import (
	"testing"

	"github.com/aviary-im/aviary/wire"
)

// TestIncomingHeaderNamespace: an incoming s2s stream header is the
// element "stream" in the streams namespace, whatever its prefix, with
// jabber:server as its content namespace (RFC 6120 §4.8, §4.9.3.10). The
// peer's exact bytes; the node answers with its own header, then the
// stream error, and offers nothing.
func TestIncomingHeaderNamespace(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath, secret: "b-secret"})
	cases := []struct{ name, header, cond string }{
		{"stream prefix bound elsewhere", "<?xml version='1.0'?><stream:stream xmlns:stream='urn:not-streams' xmlns='jabber:server' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>", "invalid-namespace"},
		{"other namespace", "<x:stream xmlns:x='urn:not-streams' xmlns='jabber:server' from='a.test' to='b.test' version='1.0'>", "invalid-namespace"},
		{"html", "<html xmlns='jabber:server' from='a.test' to='b.test' version='1.0'>", "invalid-namespace"},
		{"undeclared prefix", "<stream:stream xmlns='jabber:server' from='a.test' to='b.test' version='1.0'>", "bad-namespace-prefix"},
		{"client content namespace", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='a.test' to='b.test' version='1.0'>", "invalid-namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := dialRaw(t, b.addr())
			p.send(tc.header)
			p.rd = wire.NewReader(p.conn, wire.Limits{})
			if _, err := p.rd.Header(); err != nil {
				t.Fatalf("no stream header before the error: %v", err)
			}
			el := p.next()
			if el.Name != "stream:error" || streamErrorCondition(el) != tc.cond {
				t.Fatalf("got %s, want stream error %s", el, tc.cond)
			}
		})
	}
	t.Run("other prefix is a stream", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.send("<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server' from='a.test' to='b.test' version='1.0'>")
		p.rd = wire.NewReader(p.conn, wire.Limits{})
		if _, err := p.rd.Header(); err != nil {
			t.Fatal(err)
		}
		if f := p.next(); f.Name != "stream:features" || f.Child("starttls", wire.NSTLS) == nil {
			t.Fatalf("features %s", f)
		}
	})
}
