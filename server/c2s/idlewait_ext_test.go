package c2s_test

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// coalescingConn keeps what is written until the next Read or Flush, so
// that several TLS records reach the server in one TCP write.
type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, p...)
	return len(p), nil
}

func (c *coalescingConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	return err
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// TestIdleReaderSeesEveryRecord sends several stanzas, each in its own TLS
// record, in one TCP write, and a stanza split over two records sent apart.
// An idle session's reader waits on the socket only when crypto/tls holds
// nothing: had it waited with the later records already read from the
// socket, those stanzas would never be answered.
func TestIdleReaderSeesEveryRecord(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alicepw")
	raw, err := net.Dial("tcp", n.Addr(server.ListenerC2STLS).String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &coalescingConn{Conn: raw}
	tc := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	c := servertest.NewClient(t, tc, "localhost")
	c.Open()
	c.Login("alice", "alicepw", "r")

	for round := 0; round < 3; round++ {
		ids := []string{"p1", "p2", "p3", "p4"}
		for _, id := range ids {
			if _, err := tc.Write([]byte("<iq type='get' id='" + id + "'><ping xmlns='urn:xmpp:ping'/></iq>")); err != nil {
				t.Fatal(err)
			}
		}
		if err := cc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			c.Expect("ping result "+id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id && el.Type() == "result" })
		}
		time.Sleep(50 * time.Millisecond) // let the reader go idle between rounds
	}

	half := "<iq type='get' id='split'><ping xmlns='urn:xmpp:p"
	if _, err := tc.Write([]byte(half)); err != nil {
		t.Fatal(err)
	}
	_ = cc.Flush()
	time.Sleep(50 * time.Millisecond)
	if _, err := tc.Write([]byte("ing'/></iq>")); err != nil {
		t.Fatal(err)
	}
	c.Expect("ping result split", func(el *wire.Element) bool { return el.ID() == "split" && el.Type() == "result" })
}
