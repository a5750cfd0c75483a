package interop

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/ejabberdtest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestGroupChatWithEjabberd federates Aviary (localhost, group chat at
// conference.localhost) with a real ejabberd (ejabberd.test, group chat
// at rooms.ejabberd.test): eve of ejabberd joins alice's Aviary room over
// s2s and they talk both ways; then alice joins eve's ejabberd room and
// they talk both ways there. The Aviary domain is "localhost" because
// ejabberd's outgoing streams find peers by name (internal/ejabberdtest
// gives its VM the names, and never DNS).
func TestGroupChatWithEjabberd(t *testing.T) {
	_, ok := ejabberdtest.Binaries()
	need(t, ok, "ejabberd")
	need(t, ejabberdtest.CanIsolateHosts(), "unshare, as root (ejabberd resolves conference.localhost from a hosts file of its own)")
	avS2S := servertest.FreeAddr(t)
	host, port, err := net.SplitHostPort(avS2S)
	if err != nil {
		t.Fatal(err)
	}
	avPort, _ := strconv.Atoi(port)
	certPath, keyPath := selfSignedPEM(t, t.TempDir(), "ejabberd.test") // self-signed on both sides: Server Dialback
	ej := ejabberdtest.Start(t, ejabberdtest.Options{
		Domain: "ejabberd.test", CertFile: certPath, KeyFile: keyPath, OutgoingPort: avPort,
		Peers:   map[string]string{"localhost": host, "conference.localhost": host},
		Modules: "  mod_muc:\n    host: \"rooms.@HOST@\"\n    access_create: all\n",
	})

	cfg := servertest.DefaultConfig(t)
	cfg.Domain = "localhost"
	cfg.S2S.Listen = avS2S
	cfg.S2S.DialbackSecret = "muc-ejabberd-interop"
	cfg.S2S.ConnectTimeout = 10 * time.Second
	cfg.S2S.Hosts = map[string]string{"ejabberd.test": ej.S2SAddr, "rooms.ejabberd.test": ej.S2SAddr}
	av := servertest.RunServer(t, cfg, server.WithService(server.NewFederationService()))
	servertest.CreateUser(t, av, "alice", "alice-secret")
	registerInBand(t, ej.C2SAddr, "ejabberd.test", "eve", "eve-secret")

	alice := servertest.DialAddr(t, av.Addr(server.ListenerC2S).String(), "localhost", false)
	alice.Login("alice", "alice-secret", "desk")
	eve := servertest.DialAddr(t, ej.C2SAddr, "ejabberd.test", false)
	eve.Login("eve", "eve-secret", "laptop")
	for _, c := range []*servertest.Client{alice, eve} {
		c.Timeout = 30 * time.Second // the first stanza each way waits for s2s and dialback
	}

	t.Run("lounge@conference.localhost", func(t *testing.T) {
		chatInFederatedRoom(t, "lounge@conference.localhost", alice, "alice", eve, "eve")
	})
	t.Run("porch@rooms.ejabberd.test", func(t *testing.T) {
		chatInFederatedRoom(t, "porch@rooms.ejabberd.test", eve, "eve", alice, "alice")
	})
}

// registerInBand creates an account by in-band registration (XEP-0077).
func registerInBand(t *testing.T, addr, domain, user, pass string) {
	t.Helper()
	c := servertest.DialAddr(t, addr, domain, false)
	defer c.Close()
	c.Send(`<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>`, user, pass)
	if el := c.Await("the registration's answer", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "reg1" }); el.Type() != "result" {
		t.Fatalf("registration of %s@%s failed: %s", user, domain, el)
	}
}
