package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// XML namespaces the client speaks.
const (
	nsStream   = "http://etherx.jabber.org/streams"
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSASL2    = "urn:xmpp:sasl:2"
	nsBind2    = "urn:xmpp:bind:0"
	nsSession  = "urn:ietf:params:xml:ns:xmpp-session"
	nsRegister = "jabber:iq:register"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// Errors of the client.
var (
	// errConflict means in-band registration found the account already there.
	errConflict = errors.New("aviary-bench: account exists")
	// errAuth means the server refused the credentials.
	errAuth = errors.New("aviary-bench: authentication failed")
	// errNoTLS means the server did not offer STARTTLS.
	errNoTLS = errors.New("aviary-bench: server offers no starttls")
)

// dialOptions say how to reach and authenticate against one server.
type dialOptions struct {
	// Transport is tcp (Addr is host:port), websocket or bosh (Addr is
	// an http:// base or the endpoint's URL).
	Transport string
	Addr      string

	Domain   string
	Mech     string // "auto", "PLAIN", "SCRAM-SHA-1"
	Timeout  time.Duration
	Resource string
	// PostQuantum lets TLS negotiate Go's default groups, including the
	// hybrid X25519MLKEM768; otherwise only X25519 and P-256 are offered.
	PostQuantum bool
	// SASL2 logs in with XEP-0388 and XEP-0386 when the server offers them.
	SASL2 bool
	// TLSSessions, when set, keeps the user's TLS sessions for resumption.
	TLSSessions tls.ClientSessionCache
}

// sasl2Logins counts logins done with SASL2 and Bind 2.
var sasl2Logins atomic.Int64

// tlsResumed counts TLS handshakes that resumed a session (-tls-resume).
var tlsResumed atomic.Int64

// conn is one client stream, over TCP (after STARTTLS), WebSocket or
// BOSH. Reading belongs to one goroutine; Write may be called from
// several.
type conn struct {
	car       carrier
	transport string
	// features is the last <stream:features/> seen.
	features *wire.Element
	jid      string
	addr     string // the server (TCP) or URL (WebSocket, BOSH) it is connected to
	smID     string // stream management: the resumable session's id
	// other, when set, gets the messages and presences that arrive while
	// the client waits for a reply (bind, session): once a resource is
	// bound, messages can come before the bind result.
	other func(*wire.Element)
}

func streamHeader(domain string) string {
	return "<?xml version='1.0'?><stream:stream to='" + domain +
		"' xmlns='jabber:client' xmlns:stream='" + nsStream + "' version='1.0'>"
}

// next reads the next top-level element.
func (c *conn) next() (*wire.Element, error) { return c.car.next() }

// clientTLSConfig is the client side of STARTTLS.
func clientTLSConfig(o dialOptions) *tls.Config {
	tc := &tls.Config{
		ServerName:         o.Domain,
		InsecureSkipVerify: true, // benchmarks run against self-signed certs
		ClientSessionCache: o.TLSSessions,
	}
	if !o.PostQuantum {
		// Go offers the hybrid X25519MLKEM768 first. Servers on OpenSSL 3.0
		// (Debian 12's Prosody and ejabberd) do not know it and settle on
		// X25519, while a Go server accepts it and pays for ML-KEM on every
		// handshake; offer the same classical groups to every server.
		tc.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	return tc
}

// readFeatures reads the stream header and the features element.
func (c *conn) readFeatures() error {
	if err := c.car.header(); err != nil {
		return fmt.Errorf("stream header: %w", err)
	}
	el, err := c.car.next()
	if err != nil {
		return fmt.Errorf("features: %w", err)
	}
	if se := asStreamErr(el); se != nil {
		return se
	}
	if el.LocalName() != "features" {
		return fmt.Errorf("expected features, got <%s/>: %s", el.Name, el.String())
	}
	c.features = el
	return nil
}

// restart opens a new stream and reads the new features.
func (c *conn) restart(domain string) error {
	if err := c.car.restart(domain); err != nil {
		return fmt.Errorf("stream restart: %w", err)
	}
	return c.readFeatures()
}

func (c *conn) writeString(s string) error {
	return c.Write([]byte(s))
}

// Write sends raw XML. It is safe for concurrent use.
func (c *conn) Write(b []byte) error { return c.car.write(b) }

// Close ends the stream and the connection without waiting for the peer.
func (c *conn) Close() { c.car.end() }

// abort closes the connection at once.
func (c *conn) abort() { c.car.abort() }

// register creates an account with in-band registration (XEP-0077) on an
// encrypted stream. errConflict means it exists already.
func (c *conn) register(user, password string) error {
	var b bytes.Buffer
	b.WriteString("<iq type='set' id='reg1'><query xmlns='" + nsRegister + "'><username>")
	wire.EscapeText(&b, user)
	b.WriteString("</username><password>")
	wire.EscapeText(&b, password)
	b.WriteString("</password></query></iq>")
	if err := c.Write(b.Bytes()); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	for {
		el, err := c.next()
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		if el.LocalName() != "iq" || el.ID() != "reg1" {
			continue
		}
		switch el.Type() {
		case "result":
			return nil
		case "error":
			if e := el.Child("error", ""); e != nil && e.Child("conflict", nsStanzas) != nil {
				return errConflict
			}
			return fmt.Errorf("register: %s", el.String())
		}
	}
}

// mechanisms lists the SASL mechanisms in the current features.
func (c *conn) mechanisms() []string {
	m := c.features.Child("mechanisms", nsSASL)
	if m == nil {
		return nil
	}
	var out []string
	for _, ch := range m.Children {
		out = append(out, strings.TrimSpace(ch.Text))
	}
	return out
}

// chooseMech picks the mechanism to use: the wanted one if offered, or for
// "auto" SCRAM-SHA-1 before PLAIN (SCRAM spares the server a key
// derivation per login, which is what real clients cost it).
func chooseMech(offered []string, want string) (string, error) {
	has := func(m string) bool {
		for _, o := range offered {
			if strings.EqualFold(o, m) {
				return true
			}
		}
		return false
	}
	if want != "" && !strings.EqualFold(want, "auto") {
		if has(want) {
			return strings.ToUpper(want), nil
		}
		return "", fmt.Errorf("mechanism %s not offered (offered %v)", want, offered)
	}
	for _, m := range []string{"SCRAM-SHA-1", "PLAIN"} {
		if has(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("no supported mechanism in %v", offered)
}

// authenticate runs SASL, restarts the stream and binds a resource; or,
// where the server offers it, SASL2 with Bind 2, which does all of that in
// one exchange.
func (c *conn) authenticate(o dialOptions, user, password string) error {
	if o.SASL2 && c.offersSASL2() && (o.Mech == "" || strings.EqualFold(o.Mech, "auto") || strings.EqualFold(o.Mech, "SCRAM-SHA-1")) {
		return c.authenticate2(user, password)
	}
	if err := c.login(o, user, password); err != nil {
		return err
	}
	return c.bind(o.Resource)
}

// offersSASL2 reports whether the features offer XEP-0388 with
// SCRAM-SHA-1 and XEP-0386 inline.
func (c *conn) offersSASL2() bool {
	a := c.features.Child("authentication", nsSASL2)
	if a == nil {
		return false
	}
	in := a.Child("inline", "")
	if in == nil || in.Child("bind", nsBind2) == nil {
		return false
	}
	for _, m := range a.Children {
		if m.LocalName() == "mechanism" && strings.TrimSpace(m.Text) == "SCRAM-SHA-1" {
			return true
		}
	}
	return false
}

// authenticate2 logs in with SCRAM-SHA-1 over XEP-0388 and binds with
// XEP-0386: <authenticate/>, <challenge/>, <response/>, <success/> with
// the bound full JID, then the authenticated stream's features, already
// on their way (no stream restart).
func (c *conn) authenticate2(user, password string) error {
	s := newSCRAM(user, password, "")
	el, err := c.scramRounds(s, nsSASL2, func(first string) string {
		return "<authenticate xmlns='" + nsSASL2 + "' mechanism='SCRAM-SHA-1'><initial-response>" + first +
			"</initial-response><bind xmlns='" + nsBind2 + "'><tag>bench</tag></bind></authenticate>"
	})
	if err != nil {
		return err
	}
	if el.LocalName() != "success" {
		return fmt.Errorf("%w: %s", errAuth, el.String())
	}
	if err := verifySCRAM(s, el.ChildText("additional-data", "")); err != nil {
		return err
	}
	if el.Child("bound", nsBind2) == nil {
		return fmt.Errorf("sasl2: not bound: %s", el.String())
	}
	c.jid = strings.TrimSpace(el.ChildText("authorization-identifier", ""))
	if !strings.Contains(c.jid, "/") {
		return fmt.Errorf("sasl2: no full JID in %s", el.String())
	}
	if el, err = c.next(); err != nil {
		return fmt.Errorf("sasl2: features: %w", err)
	}
	if el.LocalName() != "features" {
		return fmt.Errorf("sasl2: expected features, got %s", el.String())
	}
	c.features = el
	sasl2Logins.Add(1)
	return nil
}

// scramRounds sends the opening element start builds around the
// base64 client-first message, answers the server's challenge in
// namespace ns, and returns the element that follows (success, failure,
// or an RFC 6120 final challenge).
func (c *conn) scramRounds(s *scramClient, ns string, start func(first string) string) (*wire.Element, error) {
	if err := c.writeString(start(base64.StdEncoding.EncodeToString([]byte(s.clientFirst())))); err != nil {
		return nil, err
	}
	el, err := c.next()
	if err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	if el.LocalName() != "challenge" {
		return nil, fmt.Errorf("%w: %s", errAuth, el.String())
	}
	ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Text))
	if err != nil {
		return nil, fmt.Errorf("sasl: challenge: %w", err)
	}
	final, err := s.clientFinal(string(ch))
	if err != nil {
		return nil, err
	}
	if err := c.writeString("<response xmlns='" + ns + "'>" +
		base64.StdEncoding.EncodeToString([]byte(final)) + "</response>"); err != nil {
		return nil, err
	}
	if el, err = c.next(); err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	return el, nil
}

// verifySCRAM checks the server's base64 final message.
func verifySCRAM(s *scramClient, verifier string) error {
	v, err := base64.StdEncoding.DecodeString(strings.TrimSpace(verifier))
	if err != nil {
		return fmt.Errorf("sasl: verifier: %w", err)
	}
	return s.verifyServer(string(v))
}

// login runs SASL and restarts the stream; bind (or a stream-management
// resumption) comes next.
func (c *conn) login(o dialOptions, user, password string) error {
	mech, err := chooseMech(c.mechanisms(), o.Mech)
	if err != nil {
		return err
	}
	switch mech {
	case "PLAIN":
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
		if err := c.writeString("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + resp + "</auth>"); err != nil {
			return err
		}
		el, err := c.next()
		if err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
		if el.LocalName() != "success" {
			return fmt.Errorf("%w: %s", errAuth, el.String())
		}
	case "SCRAM-SHA-1":
		if err := c.scram(user, password); err != nil {
			return err
		}
	}
	return c.restart(o.Domain)
}

func (c *conn) scram(user, password string) error {
	s := newSCRAM(user, password, "")
	el, err := c.scramRounds(s, nsSASL, func(first string) string {
		return "<auth xmlns='" + nsSASL + "' mechanism='SCRAM-SHA-1'>" + first + "</auth>"
	})
	if err != nil {
		return err
	}
	var verifier string
	switch el.LocalName() {
	case "success":
		verifier = el.Text
	case "challenge": // RFC 6120 allows the verifier in a last challenge
		verifier = el.Text
		if err := c.writeString("<response xmlns='" + nsSASL + "'/>"); err != nil {
			return err
		}
		if el, err = c.next(); err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
		if el.LocalName() != "success" {
			return fmt.Errorf("%w: %s", errAuth, el.String())
		}
	default:
		return fmt.Errorf("%w: %s", errAuth, el.String())
	}
	return verifySCRAM(s, verifier)
}

// bind binds a resource and, when the server wants it, starts a legacy
// session (RFC 3921).
func (c *conn) bind(resource string) error {
	if c.features.Child("bind", nsBind) == nil {
		return errors.New("bind not offered")
	}
	var b bytes.Buffer
	b.WriteString("<iq type='set' id='bind1'><bind xmlns='" + nsBind + "'>")
	if resource != "" {
		b.WriteString("<resource>")
		wire.EscapeText(&b, resource)
		b.WriteString("</resource>")
	}
	b.WriteString("</bind></iq>")
	if err := c.Write(b.Bytes()); err != nil {
		return err
	}
	el, err := c.waitIQ("bind1")
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if el.Type() != "result" {
		return fmt.Errorf("bind: %s", el.String())
	}
	if bd := el.Child("bind", nsBind); bd != nil {
		c.jid = strings.TrimSpace(bd.ChildText("jid", ""))
	}
	if c.jid == "" {
		return fmt.Errorf("bind: no jid in %s", el.String())
	}
	if s := c.features.Child("session", nsSession); s != nil && s.Child("optional", "") == nil {
		if err := c.writeString("<iq type='set' id='sess1'><session xmlns='" + nsSession + "'/></iq>"); err != nil {
			return err
		}
		el, err := c.waitIQ("sess1")
		if err != nil {
			return fmt.Errorf("session: %w", err)
		}
		if el.Type() != "result" {
			return fmt.Errorf("session: %s", el.String())
		}
	}
	return nil
}

// waitIQ reads until the iq with the given id arrives, answering or
// dropping whatever comes before it.
func (c *conn) waitIQ(id string) (*wire.Element, error) {
	for {
		el, err := c.next()
		if err != nil {
			return nil, err
		}
		if el.LocalName() == "iq" && el.ID() == id && (el.Type() == "result" || el.Type() == "error") {
			return el, nil
		}
		if se := asStreamErr(el); se != nil {
			return nil, se
		}
		if n := el.LocalName(); c.other != nil && (n == "message" || n == "presence") {
			c.other(el)
			continue
		}
		c.answerIQ(el)
	}
}

// answerIQ replies to requests from the server so it does not wait on us:
// a result for pings and roster pushes, service-unavailable for the rest.
func (c *conn) answerIQ(el *wire.Element) {
	if b := iqReply(el); b != nil {
		c.Write(b)
	}
}

// iqReply is the answer to an IQ request (nil for anything else): a
// result for a ping or a roster push, else service-unavailable.
func iqReply(el *wire.Element) []byte {
	if el.LocalName() != "iq" || (el.Type() != "get" && el.Type() != "set") {
		return nil
	}
	var b bytes.Buffer
	payload := el.FirstChild()
	to := el.From()
	b.WriteString("<iq type='")
	if payload != nil && (payload.NS() == "urn:xmpp:ping" || payload.NS() == "jabber:iq:roster") {
		b.WriteString("result'")
		writeAttrs(&b, "id", el.ID(), "to", to)
		b.WriteString("/>")
	} else {
		b.WriteString("error'")
		writeAttrs(&b, "id", el.ID(), "to", to)
		b.WriteString("><error type='cancel'><service-unavailable xmlns='" + nsStanzas + "'/></error></iq>")
	}
	return b.Bytes()
}

func writeAttrs(b *bytes.Buffer, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		b.WriteString(" " + pairs[i] + "='")
		wire.EscapeAttr(b, pairs[i+1])
		b.WriteString("'")
	}
}

// streamErr is a stream error the server sent (RFC 6120 §4.9).
type streamErr struct {
	Cond string // defined condition, e.g. see-other-host, system-shutdown
	Host string // with see-other-host: where to connect instead
	Text string
}

func (e *streamErr) Error() string {
	msg := "stream error " + e.Cond
	if e.Host != "" {
		msg += " " + e.Host
	}
	if e.Text != "" {
		msg += ": " + e.Text
	}
	return msg
}

// asStreamErr returns el as a stream error, or nil when it is not one.
func asStreamErr(el *wire.Element) *streamErr {
	if el.LocalName() != "error" || !(el.NS() == nsStream || strings.HasPrefix(el.Name, "stream:")) {
		return nil
	}
	se := &streamErr{}
	for _, ch := range el.Children {
		if ch.NS() != wire.NSStreams {
			continue
		}
		if ch.LocalName() == "text" {
			se.Text = strings.TrimSpace(ch.AllText())
			continue
		}
		se.Cond = ch.LocalName()
		if se.Cond == "see-other-host" {
			se.Host = strings.TrimSpace(ch.AllText())
		}
	}
	return se
}
