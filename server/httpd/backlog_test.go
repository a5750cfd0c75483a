package httpd_test

import (
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// next returns the next element the BOSH session brought, polling for
// more; a terminate body ends the stream (its stream error, if any, is
// returned as an element first).
func (b *boshClient) next() (*wire.Element, error) {
	b.t.Helper()
	for len(b.inbox) == 0 {
		if resp := b.postRaw("", ""); resp.Attr("type") == "terminate" && len(b.inbox) == 0 {
			return nil, fmt.Errorf("bosh: session terminated: %s", resp)
		}
	}
	el := b.inbox[0]
	b.inbox = b.inbox[1:]
	return el, nil
}

// TestOfflineFloodOverBOSHAndWebSocket replays issue 16's offline flood
// against a victim logging in over BOSH and over WebSocket: every message
// arrives, in order, with no stream error, and the session is usable.
func TestOfflineFloodOverBOSHAndWebSocket(t *testing.T) {
	n, _, base := node(t, nil)
	for _, u := range []string{"alice", "bob", "mallory"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	m := servertest.DialTLS(t, n)
	mJID := m.Login("mallory", "pw-mallory", "r")
	sent := func(id string) func(*wire.Element) bool {
		return func(el *wire.Element) bool { return el.Name == "message" && el.ID() == id }
	}

	t.Run("BOSH", func(t *testing.T) {
		servertest.FloodOffline(t, n, m, "alice@localhost")
		b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100}
		b.login("alice", "pw-alice", "web")
		b.post("", "<presence xmlns='jabber:client'/>")
		servertest.FloodInOrder(t, servertest.ReadFlood(t, b.next, servertest.FloodMessages))
		b.post("", "<message xmlns='jabber:client' to='"+mJID+"' type='chat' id='from-bosh'><body>still here</body></message>")
		m.Await("alice's message", sent("from-bosh"))
		m.Send("<message to='%s' type='chat' id='to-bosh'><body>welcome back</body></message>", b.jid)
		b.expect("a message to alice", sent("to-bosh"))
	})
	t.Run("WebSocket", func(t *testing.T) {
		servertest.FloodOffline(t, n, m, "bob@localhost")
		w := dialWS(t, base)
		w.login("bob", "pw-bob", "tab")
		w.send("<presence xmlns='jabber:client'/>")
		servertest.FloodInOrder(t, servertest.ReadFlood(t, func() (*wire.Element, error) { return w.next(), nil }, servertest.FloodMessages))
		w.send("<message xmlns='jabber:client' to='" + mJID + "' type='chat' id='from-ws'><body>still here</body></message>")
		m.Await("bob's message", sent("from-ws"))
		m.Send("<message to='%s' type='chat' id='to-ws'><body>welcome back</body></message>", w.jid)
		w.expect("a message to bob", sent("to-ws"))
	})
}
