package s2s

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/ejabberdtest"
	"github.com/aviary-im/aviary/wire"
)

// ejabberdServer is a throwaway ejabberd (internal/ejabberdtest) for one
// test.
type ejabberdServer struct {
	domain  string
	c2sAddr string
	s2sAddr string
}

type ejabberdOpts struct {
	domain   string
	cert     *issued
	caFile   string
	peerPort int // the Aviary listener's port on 127.0.0.1
}

// startEjabberd runs ejabberd on 127.0.0.3. ejabberd has no static host
// map, so the Aviary side uses the domain "localhost", which the VM's
// inetrc resolves to 127.0.0.1, and ejabberd's outgoing_s2s_port points
// at Aviary's listener.
func startEjabberd(t *testing.T, o ejabberdOpts) *ejabberdServer {
	t.Helper()
	requireBinary(t, "ejabberdctl", "/usr/sbin/ejabberdctl")
	requireBinary(t, "erl", "/usr/bin/erl")
	s := ejabberdtest.Start(t, ejabberdtest.Options{
		Domain: o.domain, CertFile: o.cert.certPath, KeyFile: o.cert.keyPath, CAFile: o.caFile,
		OutgoingPort: o.peerPort, Peers: map[string]string{"localhost": "127.0.0.1"},
	})
	return &ejabberdServer{domain: o.domain, c2sAddr: s.C2SAddr, s2sAddr: s.S2SAddr}
}

// registerIBR creates an account by in-band registration (XEP-0077).
func registerIBR(t *testing.T, addr, domain, user, pass string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &c2sClient{t: t, conn: conn, rd: wire.NewReader(conn, wire.Limits{})}
	c.send(fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`, domain))
	if _, err := c.rd.Header(); err != nil {
		t.Fatal(err)
	}
	c.next() // features
	c.send(`<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>` + user + `</username><password>` + pass + `</password></query></iq>`)
	el := c.expect(func(el *wire.Element) bool { return el.ID() == "reg1" }, "registration answer")
	if el.Type() != "result" {
		t.Fatalf("registration failed: %s", el)
	}
}

// TestInteropEjabberd federates an Aviary s2s Service (domain localhost on
// 127.0.0.1) with a real ejabberd (ejabberd.test on 127.0.0.3), both ways.
func TestInteropEjabberd(t *testing.T) {
	requireBinary(t, "ejabberdctl", "/usr/sbin/ejabberdctl")
	for _, tc := range []struct {
		name       string
		selfSigned bool
		xmppAddr   bool
		wantMethod string
	}{
		{"sasl external", false, false, "sasl-external"},
		{"dialback", true, false, "dialback"},
		// ejabberd 23.01 crashes on SASL EXTERNAL with an XmppAddr in our
		// certificate; Aviary then retries with dialback.
		{"xmppaddr certificate falls back to dialback", false, true, "dialback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			var aviaryCert, ejCert *issued
			if tc.selfSigned {
				aviaryCert, ejCert = domainCert(t, nil, "localhost"), domainCert(t, nil, "ejabberd.test")
			} else {
				// DNS-ID only: ejabberd 23.01 crashes (badarg in
				// xmpp_stream_pkix:get_cert_domains) on a peer certificate
				// with an XmppAddr otherName.
				aviaryCert = issue(t, ca, "localhost", certNames{dns: []string{"localhost"}})
				if tc.xmppAddr {
					aviaryCert = domainCert(t, ca, "localhost")
				}
				ejCert = domainCert(t, ca, "ejabberd.test")
			}
			av := startNode(t, nodeOpts{domain: "localhost", cert: aviaryCert, caFile: ca.pemPath, secret: "interop"})
			ej := startEjabberd(t, ejabberdOpts{domain: "ejabberd.test", cert: ejCert, caFile: ca.pemPath,
				peerPort: av.svc.Addr().(*net.TCPAddr).Port})
			av.cfg.S2S.Hosts["ejabberd.test"] = ej.s2sAddr
			registerIBR(t, ej.c2sAddr, "ejabberd.test", "eve", "secret-pw")
			eve := loginC2S(t, ej.c2sAddr, "ejabberd.test", "eve", "secret-pw", "desk")

			t.Run("aviary to ejabberd message", func(t *testing.T) {
				av.svc.Send(t.Context(), msg("alice@localhost/home", "eve@ejabberd.test", "hi eve"))
				el := eve.expect(isBody("hi eve"), "message from aviary")
				if el.From() != "alice@localhost/home" {
					t.Fatalf("from %q", el.From())
				}
			})
			t.Run("ejabberd to aviary message", func(t *testing.T) {
				eve.send(`<message to='alice@localhost' type='chat' id='e1'><body>hi alice</body></message>`)
				el := av.expect(isBody("hi alice"), "message from ejabberd")
				if el.From() != eve.jid {
					t.Fatalf("from %q, want %q", el.From(), eve.jid)
				}
			})
			t.Run("iq from ejabberd user answered by aviary", func(t *testing.T) {
				eve.send(`<iq to='localhost' type='get' id='ping-a'><ping xmlns='urn:xmpp:ping'/></iq>`)
				el := eve.expect(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ping-a" }, "ping result")
				if el.Type() != "result" || el.From() != "localhost" {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("iq from aviary answered by ejabberd", func(t *testing.T) {
				iq := wire.New("iq", "from", "alice@localhost/home", "to", "ejabberd.test", "type", "get", "id", "ver-e").
					Append(wire.NewNS("query", "jabber:iq:version"))
				av.svc.Send(t.Context(), iq)
				el := av.expect(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ver-e" }, "version result")
				if el.Type() != "result" || el.FirstChild().ChildText("name", "") == "" {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("presence subscription to ejabberd user", func(t *testing.T) {
				av.svc.Send(t.Context(), wire.New("presence", "from", "alice@localhost", "to", "eve@ejabberd.test", "type", "subscribe", "id", "sub1"))
				el := eve.expect(func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "subscribe" }, "subscription request")
				if el.From() != "alice@localhost" {
					t.Fatalf("got %s", el)
				}
				eve.send(`<presence to='alice@localhost' type='subscribed'/>`)
				av.expect(func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "subscribed" }, "subscribed")
			})
			t.Run("error for a user that does not exist", func(t *testing.T) {
				iq := wire.New("iq", "from", "alice@localhost/home", "to", "nobody@ejabberd.test", "type", "get", "id", "nouser").
					Append(wire.NewNS("query", "jabber:iq:version"))
				av.svc.Send(t.Context(), iq)
				el := av.expect(func(el *wire.Element) bool { return el.ID() == "nouser" }, "error for missing user")
				if !el.IsError() {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("authentication method", func(t *testing.T) {
				c := av.outConnFor("localhost", "ejabberd.test")
				if c == nil {
					t.Fatal("no outgoing stream")
				}
				c.mu.Lock()
				m := c.method
				c.mu.Unlock()
				if m != tc.wantMethod {
					t.Fatalf("authenticated by %q, want %q", m, tc.wantMethod)
				}
			})
		})
	}
}
