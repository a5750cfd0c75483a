package link

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The handshake proves to each side that the other knows the cluster
// secret, without sending it, and binds the connection to the node names:
//
//	server → client: "AVL1", 32-byte server nonce Ns
//	client → server: "AVL1", 32-byte client nonce Nc, u8 len + client name,
//	                 u8 len + expected server name,
//	                 HMAC-SHA256(secret, "c" Ns Nc client server)
//	server → client: HMAC-SHA256(secret, "s" Nc Ns server client)
//
// The server closes the connection on a bad MAC or a name that is not its
// own; the client refuses a server whose MAC does not verify. Fresh nonces
// on both sides stop replays. Unless Options.Plaintext, all of this runs
// inside TLS (tls.go).
const magic = "AVL1"

var (
	// ErrAuth means the peer failed the secret handshake.
	ErrAuth = errors.New("link: authentication failed")
)

const handshakeTimeout = 5 * time.Second

func mac(secret []byte, dir string, n1, n2 []byte, a, b string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(dir))
	h.Write(n1)
	h.Write(n2)
	h.Write([]byte{byte(len(a))})
	h.Write([]byte(a))
	h.Write([]byte{byte(len(b))})
	h.Write([]byte(b))
	return h.Sum(nil)
}

// serverHandshake authenticates an accepted connection and returns the
// client's node name.
func serverHandshake(c net.Conn, secret []byte, self string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	ns := make([]byte, 32)
	_, _ = rand.Read(ns)
	if _, err := c.Write(append([]byte(magic), ns...)); err != nil {
		return "", err
	}
	hdr := make([]byte, 4+32+1)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return "", err
	}
	if string(hdr[:4]) != magic {
		return "", fmt.Errorf("%w: bad magic", ErrAuth)
	}
	nc := hdr[4:36]
	client, err := readString(c, int(hdr[36]))
	if err != nil {
		return "", err
	}
	var l [1]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return "", err
	}
	target, err := readString(c, int(l[0]))
	if err != nil {
		return "", err
	}
	got := make([]byte, 32)
	if _, err := io.ReadFull(c, got); err != nil {
		return "", err
	}
	if !hmac.Equal(got, mac(secret, "c", ns, nc, client, target)) {
		return "", fmt.Errorf("%w: from %q", ErrAuth, client)
	}
	if target != self {
		return "", fmt.Errorf("%w: client %q wants node %q, this is %q", ErrAuth, client, target, self)
	}
	if _, err := c.Write(mac(secret, "s", nc, ns, self, client)); err != nil {
		return "", err
	}
	return client, nil
}

// clientHandshake authenticates a dialled connection to node server.
func clientHandshake(c net.Conn, secret []byte, self, server string) error {
	if len(self) > 255 || len(server) > 255 {
		return errors.New("link: node name longer than 255 bytes")
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	hdr := make([]byte, 4+32)
	if _, err := io.ReadFull(c, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %q closed the connection before the handshake (shutting down, or its cluster.plaintext_links differs)", ErrAuth, server)
		}
		return fmt.Errorf("no handshake from %q (does its cluster.plaintext_links differ?): %w", server, err)
	}
	if string(hdr[:4]) != magic {
		return fmt.Errorf("%w: bad magic from %q", ErrAuth, server)
	}
	ns := hdr[4:]
	nc := make([]byte, 32)
	_, _ = rand.Read(nc)
	msg := append([]byte(magic), nc...)
	msg = append(msg, byte(len(self)))
	msg = append(msg, self...)
	msg = append(msg, byte(len(server)))
	msg = append(msg, server...)
	msg = append(msg, mac(secret, "c", ns, nc, self, server)...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, 32)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%w: %q closed the handshake: %v", ErrAuth, server, err)
	}
	if !hmac.Equal(got, mac(secret, "s", nc, ns, server, self)) {
		return fmt.Errorf("%w: %q", ErrAuth, server)
	}
	return nil
}

func readString(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}
