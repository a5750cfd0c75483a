package bosh

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/wire"
)

// Namespaces of XEP-0124 and XEP-0206.
const (
	NSHTTPBind = "http://jabber.org/protocol/httpbind"
	NSXBOSH    = "urn:xmpp:xbosh"
)

// maxRID is 2^53-1, the largest rid XEP-0124 §14.1 allows.
const maxRID = 1<<53 - 1

// protocolVersion is the XEP-0124 version we implement.
const protocolVersion = "1.11"

// xboshAttr returns an attribute in the urn:xmpp:xbosh namespace whatever
// prefix the client bound it to (almost always "xmpp").
func xboshAttr(body *wire.Element, local string) string {
	prefix := "xmpp"
	for _, a := range body.Attrs {
		if strings.HasPrefix(a.Name, "xmlns:") && a.Value == NSXBOSH {
			prefix = a.Name[len("xmlns:"):]
			break
		}
	}
	return body.Attr(prefix + ":" + local)
}

// parseUint reads a non-negative integer attribute. ok is false when the
// attribute is present but not a valid number.
func parseUint(body *wire.Element, name string) (v int64, present, ok bool) {
	s := body.Attr(name)
	if s == "" {
		return 0, false, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, true, false
	}
	return n, true, true
}

// sniffBody reads the attributes of the <body> start tag of a document that
// is too big or not well-formed, so the session it names can be ended.
func sniffBody(raw []byte) *wire.Element {
	d := xml.NewDecoder(bytes.NewReader(raw))
	for i := 0; i < 8; i++ {
		tok, err := d.RawToken()
		if err != nil {
			return nil
		}
		if t, ok := tok.(xml.StartElement); ok {
			el := &wire.Element{Name: t.Name.Local}
			if t.Name.Space != "" {
				el.Name = t.Name.Space + ":" + t.Name.Local
			}
			for _, a := range t.Attr {
				n := a.Name.Local
				if a.Name.Space != "" {
					n = a.Name.Space + ":" + n
				}
				el.Attrs = append(el.Attrs, wire.Attr{Name: n, Value: a.Value})
			}
			return el
		}
	}
	return nil
}

// writeBody serializes a response <body/> with attrs and payloads, each
// already serialized by WritePayload. stream:features and stream:error use
// the stream prefix the body declares.
func writeBody(buf *bytes.Buffer, attrs []wire.Attr, payloads []payload) {
	buf.WriteString(`<body xmlns="` + NSHTTPBind + `"`)
	for _, a := range attrs {
		buf.WriteByte(' ')
		buf.WriteString(a.Name)
		buf.WriteString(`="`)
		wire.EscapeAttr(buf, a.Value)
		buf.WriteByte('"')
	}
	if len(payloads) == 0 {
		buf.WriteString("/>")
		return
	}
	buf.WriteString(` xmlns:stream="` + wire.NSStream + `">`)
	for _, p := range payloads {
		buf.Write(p.b)
	}
	buf.WriteString("</body>")
}

// payloadBytes serializes one element for a body.
func payloadBytes(el *wire.Element) []byte {
	var buf bytes.Buffer
	WritePayload(&buf, el)
	return buf.Bytes()
}

// WritePayload serializes one top-level element for a transport without a
// stream root (BOSH body, WebSocket message): a stanza that inherits its
// namespace gets xmlns='jabber:client' declared. The element itself is not
// modified, because the router may share it between sessions.
func WritePayload(buf *bytes.Buffer, el *wire.Element) {
	if el.IsStanza() && !el.HasAttr("xmlns") {
		c := *el
		c.Attrs = make([]wire.Attr, 0, len(el.Attrs)+1)
		c.Attrs = append(c.Attrs, wire.Attr{Name: "xmlns", Value: wire.NSClient})
		c.Attrs = append(c.Attrs, el.Attrs...)
		c.WriteTo(buf)
		return
	}
	el.WriteTo(buf)
}

// emptyBody is a response without payloads, for a request whose session
// has nothing to say to it.
func emptyBody() []byte {
	var buf bytes.Buffer
	writeBody(&buf, nil, nil)
	return buf.Bytes()
}

// terminateBody is a terminal binding error response.
func terminateBody(condition string) []byte {
	var buf bytes.Buffer
	attrs := []wire.Attr{{Name: "type", Value: "terminate"}}
	if condition != "" {
		attrs = append(attrs, wire.Attr{Name: "condition", Value: condition})
	}
	writeBody(&buf, attrs, nil)
	return buf.Bytes()
}

// inbound prepares a payload from a client body for the c2s core: a
// stanza that declares xmlns='jabber:client' (as it must inside a BOSH
// body) or none at all looks exactly as one read from a TCP stream.
func inbound(el *wire.Element) *wire.Element {
	if el.IsStanza() && el.NS() == wire.NSClient {
		el.RemoveAttr("xmlns")
	}
	return el
}
