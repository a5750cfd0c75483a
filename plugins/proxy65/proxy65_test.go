package proxy65_test

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/proxy65"
)

// dial connects to the proxy and requests addr as a XEP-0065 client does.
func dial(t *testing.T, hostport, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var greet [2]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil || greet != [2]byte{5, 0} {
		t.Fatalf("greeting %v %v", greet, err)
	}
	req := append([]byte{5, 1, 0, 3, byte(len(addr))}, addr...)
	req = append(req, 0, 0)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, len(req))
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 || !bytes.Equal(reply[5:5+len(addr)], []byte(addr)) {
		t.Fatalf("reply %v %v", reply, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

func TestProxy(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.Plugins.Settings = map[string]map[string]any{proxy65.ID: {"listen": "127.0.0.1:0"}}
	p := proxy65.New()
	m := h.Start(t, p)
	host, port := p.Streamhost()
	hostport := net.JoinHostPort(host, strconv.Itoa(port))

	want := `<iq type="result" id="q" to="romeo@example.com/orchard"><query xmlns="http://jabber.org/protocol/bytestreams"><streamhost jid="example.com" host="127.0.0.1" port="` + strconv.Itoa(port) + `"/></query></iq>`
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='q' from='romeo@example.com/orchard'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>`); got != want {
		t.Fatalf("streamhost\ngot  %s\nwant %s", got, want)
	}
	if ids := m.Identities(); len(ids) != 1 || ids[0].Category != "proxy" {
		t.Errorf("identities %v", ids)
	}

	addr := proxy65.Address("s1", "romeo@example.com/orchard", "juliet@example.com/balcony")
	activate := `<iq type='set' id='a' from='romeo@example.com/orchard'><query xmlns='http://jabber.org/protocol/bytestreams' sid='s1'><activate>juliet@example.com/balcony</activate></query></iq>`
	target := dial(t, hostport, addr)
	// Only one side connected: activation fails.
	if got := h.IQ(t, m, plugins.ToServer, activate); !bytes.Contains([]byte(got), []byte("item-not-found")) {
		t.Fatalf("early activation: %s", got)
	}
	initiator := dial(t, hostport, addr)
	// The connection order may race the proxy's bookkeeping: retry briefly.
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = h.IQ(t, m, plugins.ToServer, activate); got == `<iq type="result" id="a" to="romeo@example.com/orchard"/>` {
			break
		}
	}
	if got != `<iq type="result" id="a" to="romeo@example.com/orchard"/>` {
		t.Fatalf("activation: %s", got)
	}
	data := bytes.Repeat([]byte("hello, juliet "), 5000)
	go func() {
		initiator.Write(data)
		initiator.(*net.TCPConn).CloseWrite()
	}()
	_ = target.SetDeadline(time.Now().Add(5 * time.Second))
	recv, err := io.ReadAll(target)
	if err != nil || !bytes.Equal(recv, data) {
		t.Fatalf("relayed %d of %d bytes, err %v", len(recv), len(data), err)
	}
}

func TestOffByDefault(t *testing.T) {
	h := plugintest.NewHost(t)
	p := proxy65.New()
	m := h.Start(t, p)
	if p.Addr() != nil || len(m.DiscoFeatures()) != 0 || len(m.DiscoItems(t.Context(), "a@example.com/b")) != 0 {
		t.Error("proxy advertised without a listen setting")
	}
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='q' from='romeo@example.com/orchard'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>`); !bytes.Contains([]byte(got), []byte("service-unavailable")) {
		t.Errorf("got %s", got)
	}
}
