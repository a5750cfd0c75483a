package servertest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// MITM is a man in the middle for channel-binding tests: it accepts
// client connections, terminates their TLS with a certificate of its own
// (as an attacker with a certificate the client accepts would), and
// re-originates TLS to the server, relaying the plaintext both ways.
// With STARTTLS it relays the plaintext negotiation until <proceed/> and
// then runs both handshakes.
type MITM struct {
	ln       net.Listener
	target   string
	starttls bool
	cert     tls.Certificate
	// ToClient, when set, rewrites each chunk of decrypted server data
	// before it goes to the client (to strip stream features).
	ToClient func([]byte) []byte

	wg sync.WaitGroup
}

// StartMITM listens on loopback in front of target (a c2s listener:
// direct TLS, or STARTTLS when starttls) and stops at the test's end.
func StartMITM(t testing.TB, target string, starttls bool) *MITM {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &MITM{ln: ln, target: target, starttls: starttls, cert: testutil.SelfSignedCert(t, "localhost")}
	m.wg.Add(1)
	go m.accept()
	t.Cleanup(func() { ln.Close(); m.wg.Wait() })
	return m
}

// Addr is where clients connect.
func (m *MITM) Addr() string { return m.ln.Addr().String() }

func (m *MITM) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.serve(c)
		}()
	}
}

func (m *MITM) serve(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", m.target, 10*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	_ = client.SetDeadline(time.Now().Add(time.Minute))
	_ = server.SetDeadline(time.Now().Add(time.Minute))
	if m.starttls {
		// Plaintext until the client asks for TLS and the server agrees;
		// the client sends nothing between the two.
		done := make(chan error, 1)
		go func() { done <- relayUntil(server, client, []byte("<starttls"), nil) }()
		if relayUntil(client, server, []byte("<proceed"), nil) != nil || <-done != nil {
			return
		}
	}
	tc := tls.Server(client, &tls.Config{Certificates: []tls.Certificate{m.cert}})
	ts := tls.Client(server, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if tc.Handshake() != nil || ts.Handshake() != nil {
		return
	}
	go func() { _, _ = io.Copy(ts, tc); ts.Close() }()
	_ = relayUntil(tc, ts, nil, m.ToClient)
}

// relayUntil copies src to dst until marker has gone through (or, with
// no marker, until src ends), rewriting each chunk with rewrite.
func relayUntil(dst io.Writer, src io.Reader, marker []byte, rewrite func([]byte) []byte) error {
	var seen []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if rewrite != nil {
				chunk = rewrite(chunk)
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return werr
			}
			if marker != nil {
				seen = append(seen, buf[:n]...)
				if bytes.Contains(seen, marker) {
					return nil
				}
			}
		}
		if err != nil {
			if marker == nil && errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
