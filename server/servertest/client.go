package servertest

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/component"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/auth/authtest"
	"github.com/aviary-im/aviary/wire"
	"mellium.im/sasl"
)

// Client is a raw-XML client for tests. Its methods fail the test on
// transport errors and protocol surprises; the ones returning an error
// report outcomes a test may want to assert (a SASL failure condition).
type Client struct {
	T       testing.TB
	Conn    net.Conn
	Domain  string
	Timeout time.Duration // per read; default 10s
	// Features are the stream features of the latest stream header.
	Features *wire.Element
	// StreamHeader is the server's latest stream header.
	StreamHeader *wire.Element
	// JID is the bound full JID.
	JID string
	// NewlineAfterElements makes the SASL helpers write a newline after
	// each element, as the go-xmpp library does.
	NewlineAfterElements bool

	rd  *wire.Reader
	ids int
}

// Dial connects to the node's STARTTLS listener and opens a stream.
func Dial(t testing.TB, n *server.Node) *Client {
	t.Helper()
	addr := n.Addr(server.ListenerC2S)
	if addr == nil {
		t.Fatal("servertest: c2s listener is off")
	}
	return DialAddr(t, addr.String(), n.Config().Domain, false)
}

// DialTLS connects to the node's direct-TLS listener and opens a stream.
func DialTLS(t testing.TB, n *server.Node) *Client {
	t.Helper()
	addr := n.Addr(server.ListenerC2STLS)
	if addr == nil {
		t.Fatal("servertest: c2s_tls listener is off")
	}
	return DialAddr(t, addr.String(), n.Config().Domain, true)
}

// DialAddr connects to addr (direct TLS when tlsNow) and opens a stream
// to domain.
func DialAddr(t testing.TB, addr, domain string, tlsNow bool) *Client {
	t.Helper()
	c := DialRaw(t, addr, domain, tlsNow)
	c.Open()
	return c
}

// DialRaw connects without sending anything.
func DialRaw(t testing.TB, addr, domain string, tlsNow bool) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("servertest: dial %s: %v", addr, err)
	}
	if tlsNow {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: domain})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("servertest: TLS handshake: %v", err)
		}
		conn = tc
	}
	return NewClient(t, conn, domain)
}

// SendRaw writes text as is.
func (c *Client) SendRaw(s string) {
	c.T.Helper()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := c.Conn.Write([]byte(s)); err != nil {
		c.T.Fatalf("servertest: write: %v", err)
	}
}

// Send writes an XML string, formatted with args like fmt.Sprintf.
func (c *Client) Send(format string, args ...any) {
	c.T.Helper()
	if len(args) > 0 {
		format = fmt.Sprintf(format, args...)
	}
	c.SendRaw(format)
}

// SendEl writes an element.
func (c *Client) SendEl(el *wire.Element) {
	c.T.Helper()
	c.SendRaw(el.String())
}

// Open sends a stream header and reads the server's header and features.
func (c *Client) Open() *wire.Element {
	c.T.Helper()
	c.SendRaw(fmt.Sprintf("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>", c.Domain))
	return c.ReadHeaderAndFeatures()
}

// ReadHeaderAndFeatures reads the server's stream header and features.
func (c *Client) ReadHeaderAndFeatures() *wire.Element {
	c.T.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	h, err := c.rd.Header()
	if err != nil {
		c.T.Fatalf("servertest: reading stream header: %v", err)
	}
	c.StreamHeader = h
	c.Features = c.ExpectName("stream:features")
	return c.Features
}

// Next reads the next element, with the client's timeout.
func (c *Client) Next() (*wire.Element, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	return c.rd.Next()
}

// MustNext reads the next element or fails.
func (c *Client) MustNext() *wire.Element {
	c.T.Helper()
	el, err := c.Next()
	if err != nil {
		c.T.Fatalf("servertest: read: %v", err)
	}
	return el
}

// Expect reads the next element and fails unless match accepts it.
func (c *Client) Expect(what string, match func(*wire.Element) bool) *wire.Element {
	c.T.Helper()
	el := c.MustNext()
	if !match(el) {
		c.T.Fatalf("servertest: want %s, got %s", what, el)
	}
	return el
}

// ExpectName reads the next element and fails unless it has this name.
func (c *Client) ExpectName(name string) *wire.Element {
	c.T.Helper()
	return c.Expect("<"+name+">", func(el *wire.Element) bool { return el.Name == name })
}

// Await reads elements, skipping those match rejects, until one matches.
func (c *Client) Await(what string, match func(*wire.Element) bool) *wire.Element {
	c.T.Helper()
	for {
		el, err := c.Next()
		if err != nil {
			c.T.Fatalf("servertest: waiting for %s: %v", what, err)
		}
		if match(el) {
			return el
		}
	}
}

// ExpectStreamError reads until the stream ends and fails unless it
// ended with a stream error of this condition.
func (c *Client) ExpectStreamError(cond string) {
	c.T.Helper()
	for {
		el, err := c.Next()
		if err != nil {
			c.T.Fatalf("servertest: want stream error %s, stream ended with %v", cond, err)
		}
		if el.Name == "stream:error" {
			if el.Child(cond, wire.NSStreams) == nil {
				c.T.Fatalf("servertest: want stream error %s, got %s", cond, el)
			}
			if _, err := c.Next(); !errors.Is(err, wire.ErrStreamEnd) {
				c.T.Fatalf("servertest: stream not closed after the error: %v", err)
			}
			return
		}
	}
}

// ExpectClosed reads until the stream or connection ends; it fails if a
// stream error or anything but stanzas arrives first.
func (c *Client) ExpectClosed() error {
	c.T.Helper()
	for {
		el, err := c.Next()
		if err != nil {
			return err
		}
		if el.Name == "stream:error" {
			c.T.Fatalf("servertest: unexpected stream error %s", el)
		}
	}
}

// StartTLS negotiates TLS (certificate not verified) and reopens the stream.
func (c *Client) StartTLS() *wire.Element {
	c.T.Helper()
	c.SendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.ExpectName("proceed")
	c.StartTLSAfterProceed()
	return c.Open()
}

// StartTLSAfterProceed runs the TLS handshake once the test has sent
// <starttls/> and read <proceed/> itself; it sends no stream header.
func (c *Client) StartTLSAfterProceed() {
	c.T.Helper()
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true, ServerName: c.Domain})
	_ = tc.SetDeadline(time.Now().Add(c.Timeout))
	if err := tc.Handshake(); err != nil {
		c.T.Fatalf("servertest: TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.Conn = tc
	c.rd = wire.NewReader(tc, wire.Limits{MaxStanzaBytes: 16 << 20})
}

// Restart reopens the stream after a SASL success the test read itself.
func (c *Client) Restart() *wire.Element {
	c.T.Helper()
	c.rd.Restart()
	return c.Open()
}

// sendSASL writes a SASL element, with a newline after it when
// NewlineAfterElements is set.
func (c *Client) sendSASL(format string, args ...any) {
	c.T.Helper()
	if c.NewlineAfterElements {
		format += "\n"
	}
	c.Send(format, args...)
}

// Mechanisms lists the SASL mechanisms in the current features.
func (c *Client) Mechanisms() []string {
	var out []string
	if c.Features == nil {
		return nil
	}
	if m := c.Features.Child("mechanisms", wire.NSSASL); m != nil {
		for _, x := range m.Children {
			out = append(out, x.Text)
		}
	}
	return out
}

// SASLError is a SASL failure the server reported.
type SASLError struct{ Condition string }

func (e *SASLError) Error() string { return "sasl failure: " + e.Condition }

// StanzaError is a stanza error the server answered with.
type StanzaError struct{ Condition string }

func (e *StanzaError) Error() string { return "stanza error: " + e.Condition }

// AuthPLAIN authenticates with PLAIN. On success the stream is reopened.
func (c *Client) AuthPLAIN(user, password string) error {
	c.T.Helper()
	data := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	c.sendSASL("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>", data)
	return c.saslResult(nil, nil)
}

// AuthSCRAM authenticates with SCRAM-SHA-1 or SCRAM-SHA-256 using
// mellium's client implementation. On success the stream is reopened.
func (c *Client) AuthSCRAM(mech, user, password string) error {
	c.T.Helper()
	m := sasl.ScramSha256
	if mech == "SCRAM-SHA-1" {
		m = sasl.ScramSha1
	}
	neg := sasl.NewClient(m, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(password), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		c.T.Fatalf("servertest: sasl: %v", err)
	}
	c.sendSASL("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", mech, base64.StdEncoding.EncodeToString(resp))
	return c.saslResult(melliumSteps(neg))
}

// melliumSteps adapts a mellium negotiator to saslResult.
func melliumSteps(neg *sasl.Negotiator) (step func([]byte) ([]byte, error), verify func([]byte) error) {
	step = func(in []byte) ([]byte, error) {
		_, out, err := neg.Step(in)
		return out, err
	}
	verify = func(in []byte) error {
		_, _, err := neg.Step(in)
		return err
	}
	return step, verify
}

// saslResult answers challenges with step and checks the additional data
// of success with verify (both nil for a mechanism without challenges).
func (c *Client) saslResult(step func([]byte) ([]byte, error), verify func([]byte) error) error {
	c.T.Helper()
	for {
		el := c.MustNext()
		switch el.Name {
		case "challenge":
			if step == nil {
				c.T.Fatalf("servertest: unexpected challenge %s", el)
			}
			in, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Text))
			if err != nil {
				c.T.Fatalf("servertest: bad challenge %s", el)
			}
			resp, err := step(in)
			if err != nil {
				c.T.Fatalf("servertest: sasl step: %v", err)
			}
			c.sendSASL("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", base64.StdEncoding.EncodeToString(resp))
		case "success":
			if verify != nil {
				in, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Text))
				if err != nil {
					c.T.Fatalf("servertest: bad success %s", el)
				}
				if err := verify(in); err != nil {
					c.T.Fatalf("servertest: server signature rejected: %v", err)
				}
			}
			c.rd.Restart()
			c.Open()
			return nil
		case "failure":
			if len(el.Children) == 0 {
				c.T.Fatalf("servertest: failure without condition %s", el)
			}
			return &SASLError{Condition: el.Children[0].Name}
		default:
			c.T.Fatalf("servertest: unexpected %s during SASL", el)
		}
	}
}

// NextID returns a fresh stanza id.
func (c *Client) NextID() string {
	c.ids++
	return fmt.Sprintf("c%d", c.ids)
}

// Bind binds resource ("" asks the server for one) and returns the full
// JID, or the stanza error condition as an error.
func (c *Client) Bind(resource string) (string, error) {
	c.T.Helper()
	id := c.NextID()
	res := ""
	if resource != "" {
		res = "<resource>" + resource + "</resource>"
	}
	c.Send("<iq type='set' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>%s</bind></iq>", id, res)
	el := c.Expect("bind result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	if el.Type() == "error" {
		e := el.Child("error", "")
		if e == nil || len(e.Children) == 0 {
			c.T.Fatalf("servertest: bad bind error %s", el)
		}
		return "", &StanzaError{Condition: e.Children[0].Name}
	}
	j := el.Child("bind", wire.NSBind).ChildText("jid", "")
	if j == "" {
		c.T.Fatalf("servertest: bind result without jid: %s", el)
	}
	c.JID = j
	return j, nil
}

// Login runs STARTTLS, SCRAM-SHA-256 and binds resource; it fails the
// test on any error.
func (c *Client) Login(user, password, resource string) string {
	c.T.Helper()
	if c.Features.Child("starttls", wire.NSTLS) != nil {
		c.StartTLS()
	}
	if err := c.AuthSCRAM("SCRAM-SHA-256", user, password); err != nil {
		c.T.Fatalf("servertest: login %s: %v", user, err)
	}
	j, err := c.Bind(resource)
	if err != nil {
		c.T.Fatalf("servertest: bind: %v", err)
	}
	return j
}

// Close ends the stream and the connection.
func (c *Client) Close() {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write([]byte("</stream:stream>"))
	_ = c.Conn.Close()
}

// Base64 encodes s for SASL payloads.
func Base64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// ReadHeaderOnly reads the server's stream header without features.
func (c *Client) ReadHeaderOnly() (*wire.Element, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	h, err := c.rd.Header()
	if err == nil {
		c.StreamHeader = h
	}
	return h, err
}

// NewClient wraps a connection the test set up itself (for example one
// that controls how writes reach the socket); nothing is sent yet.
func NewClient(t testing.TB, conn net.Conn, domain string) *Client {
	c := &Client{T: t, Conn: conn, Domain: domain, Timeout: 10 * time.Second}
	c.rd = wire.NewReader(conn, wire.Limits{MaxStanzaBytes: 16 << 20})
	t.Cleanup(func() { _ = c.Conn.Close() })
	return c
}

// DialComponent connects to a XEP-0114 component listener as the
// component domain with secret and completes the handshake; the client
// then reads and sends stanzas as the component.
func DialComponent(t testing.TB, addr, domain, secret string) *Client {
	t.Helper()
	c := DialRaw(t, addr, domain, false)
	c.SendRaw(fmt.Sprintf("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>", domain))
	h, err := c.ReadHeaderOnly()
	if err != nil {
		t.Fatalf("servertest: component stream header: %v", err)
	}
	c.Send("<handshake>%s</handshake>", component.Digest(h.ID(), secret))
	c.ExpectName("handshake")
	return c
}

// TLSState is the client's view of the stream's TLS connection.
func (c *Client) TLSState() tls.ConnectionState {
	c.T.Helper()
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		c.T.Fatal("servertest: the stream is not on TLS")
	}
	return tc.ConnectionState()
}

// AuthSCRAMWith authenticates with RFC 6120 SASL using a SCRAM client
// whose channel-binding flag and data the test chose (authtest.SCRAM),
// for mech (a -PLUS name when it binds). On success the server's
// signature is checked and the stream reopened.
func (c *Client) AuthSCRAMWith(mech string, sc *authtest.SCRAM) error {
	c.T.Helper()
	c.sendSASL("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", mech, base64.StdEncoding.EncodeToString(sc.First()))
	return c.saslResult(sc.Final, sc.Verify)
}
