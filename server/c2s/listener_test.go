package c2s

import (
	"net"
	"syscall"
	"testing"
)

// Accepted client connections carry no TCP keepalive: liveness is the
// XMPP ping's job (c2s.ping_interval), and Go's default would probe every
// idle phone every 15 s.
func TestNoTCPKeepalive(t *testing.T) {
	l, err := testServer(0).Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.ln.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if on != 0 {
		t.Fatalf("SO_KEEPALIVE = %d on an accepted client connection", on)
	}
}
