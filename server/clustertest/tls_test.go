package clustertest_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestTLSResumesOnAnotherNode: a client that reconnects to another node
// of the cluster resumes its TLS session there (tls.session_tickets
// "cluster", the default: ticket keys derived from cluster.secret), so a
// node's clients reconnecting after it died or drained skip the
// certificate on the survivors.
func TestTLSResumesOnAnotherNode(t *testing.T) {
	c := fixture(t)
	cache := tls.NewLRUClientSessionCache(4)
	if starttls(t, c.nodes[0].C2SAddr(), cache) {
		t.Fatal("the first handshake resumed")
	}
	if !starttls(t, c.nodes[1].C2SAddr(), cache) {
		t.Fatal("a session node1 started did not resume on node2")
	}
	if !starttls(t, c.nodes[2].C2SAddr(), cache) {
		t.Fatal("a session did not resume on node3")
	}
}

// starttls opens a stream to addr, upgrades it with STARTTLS using cache,
// reads the new stream's features (and with them the session tickets the
// server sent after the handshake) and reports whether the TLS session
// was resumed.
func starttls(t *testing.T, addr string, cache tls.ClientSessionCache) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	const header = `<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`
	r := bufio.NewReader(conn)
	readUntil := func(r *bufio.Reader, marker string) {
		t.Helper()
		var got strings.Builder
		for !strings.Contains(got.String(), marker) {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("reading for %s: %v (got %q)", marker, err, got.String())
			}
			got.WriteByte(b)
		}
	}
	fmt.Fprint(conn, header)
	readUntil(r, "</stream:features>")
	fmt.Fprint(conn, `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	readUntil(r, "<proceed")
	readUntil(r, ">")
	tc := tls.Client(conn, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, ClientSessionCache: cache})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(tc, header)
	readUntil(bufio.NewReader(tc), "</stream:features>")
	return tc.ConnectionState().DidResume
}
