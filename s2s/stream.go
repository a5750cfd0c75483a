package s2s

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/aviary-im/aviary/wire"
)

// XML namespaces of the s2s stream features we use.
const (
	nsBidiFeature = "urn:xmpp:features:bidi"
)

// streamHeader is the opening tag of an s2s stream. id is set only by the
// receiving side.
func streamHeader(from, to, id string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0'`)
	attr := func(name, v string) {
		if v == "" {
			return
		}
		b.WriteString(" " + name + "='")
		wire.EscapeAttr(&b, v)
		b.WriteString("'")
	}
	attr("from", from)
	attr("to", to)
	attr("id", id)
	b.WriteString(">")
	return b.Bytes()
}

const streamClose = "</stream:stream>"

// newStreamID returns a random stream ID (also the dialback key input).
func newStreamID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// qname returns the namespace and local name of a top-level element,
// resolving its prefix against its own declarations, then the stream
// header's. Unprefixed elements without xmlns are in the stream's default
// namespace.
func qname(el, hdr *wire.Element) (ns, local string) {
	prefix, local, ok := strings.Cut(el.Name, ":")
	if !ok {
		prefix, local = "", el.Name
	}
	decl := "xmlns"
	if prefix != "" {
		decl = "xmlns:" + prefix
	}
	if el.HasAttr(decl) {
		return el.Attr(decl), local
	}
	if hdr != nil && hdr.HasAttr(decl) {
		return hdr.Attr(decl), local
	}
	if prefix == "stream" {
		return wire.NSStream, local
	}
	if prefix == "db" {
		return nsDialback, local
	}
	return "", local
}

// checkHeader validates an s2s stream header: the stream and content
// namespaces (wire.Reader has checked the first already). It returns the
// stream error condition to send, or "".
func checkHeader(hdr *wire.Element) string {
	ns, local := qname(hdr, nil)
	if local != "stream" || ns != wire.NSStream {
		return "invalid-namespace"
	}
	if def := hdr.Attr("xmlns"); def != wire.NSServer {
		return "invalid-namespace"
	}
	if v := hdr.Attr("version"); v == "" || !strings.HasPrefix(v, "1.") {
		return "unsupported-version"
	}
	return ""
}

// domainOf returns the lower-cased domain part of a JID string, or "".
func domainOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.IndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	return strings.TrimSuffix(strings.ToLower(j), ".")
}

// streamErrorCondition returns the condition of a <stream:error/>.
func streamErrorCondition(el *wire.Element) string {
	for _, c := range el.Children {
		if c.NS() == wire.NSStreams && c.Name != "text" {
			return c.Name
		}
	}
	return "undefined-condition"
}

// streamErrorText returns the text of a <stream:error/>, or "".
func streamErrorText(el *wire.Element) string {
	return el.ChildText("text", wire.NSStreams)
}

// featureHas reports whether a features element lists name in ns.
func featureHas(features *wire.Element, name, ns string) *wire.Element {
	if features == nil {
		return nil
	}
	return features.Child(name, ns)
}

// hasMechanism reports whether features offer the SASL mechanism.
func hasMechanism(features *wire.Element, mech string) bool {
	m := featureHas(features, "mechanisms", wire.NSSASL)
	if m == nil {
		return false
	}
	for _, c := range m.ChildrenNamed("mechanism", "") {
		if strings.EqualFold(strings.TrimSpace(c.AllText()), mech) {
			return true
		}
	}
	return false
}

// elementBytes serializes an element.
func elementBytes(el *wire.Element) []byte { return el.Bytes() }
