package wire

import "strings"

// Namespace prefixes (Namespaces in XML 1.0). The rest of the server
// matches an element by its name and its xmlns attribute, as nearly every
// client writes it. A peer may as well write <c:message
// xmlns:c='jabber:client'>, or declare a prefix on the stream header and
// use it on stanzas: the same element to an XML parser. So that such an
// element means what it says (and an undeclared prefix is refused instead
// of guessed), what the stream reader returns is in a canonical form:
//
//   - an element is unprefixed, and carries xmlns exactly when its
//     namespace differs from the one it would inherit (its parent's, or for
//     a top-level element the stream's default);
//   - except elements of the two namespaces XMPP code names by prefix:
//     http://etherx.jabber.org/streams is always "stream:" (stream:features,
//     stream:error) and jabber:server:dialback always "db:" (db:result,
//     db:verify), whatever prefix the peer used;
//   - attributes and prefix declarations are kept as written.
//
// Elements without any prefix, nearly all of them, are returned exactly as
// read: only a stanza that has a prefixed element name is rewritten.
// Attribute prefixes are not checked (a BOSH client that forgets to
// declare xmpp: on xmpp:version harms nothing).

// NSXML is the namespace the xml prefix is bound to.
const NSXML = "http://www.w3.org/XML/1998/namespace"

// nsScope is what a start tag sees: the default namespace and the prefix
// bindings in effect, innermost last.
type nsScope struct {
	def      string
	bindings []nsBinding
}

type nsBinding struct{ prefix, ns string }

func (sc *nsScope) lookup(prefix string) (string, bool) {
	for i := len(sc.bindings) - 1; i >= 0; i-- {
		if sc.bindings[i].prefix == prefix {
			ns := sc.bindings[i].ns
			return ns, ns != "" // xmlns:p='' is no binding
		}
	}
	return "", false
}

// enter returns the scope inside el: its own declarations on top of sc.
// The bindings slice is shared with sc; entering appends past sc's length,
// so siblings may overwrite each other's entries but never sc's.
func (sc nsScope) enter(el *Element) nsScope {
	for _, a := range el.Attrs {
		switch {
		case a.Name == "xmlns":
			sc.def = a.Value
		case strings.HasPrefix(a.Name, "xmlns:"):
			sc.bindings = append(sc.bindings[:len(sc.bindings):len(sc.bindings)], nsBinding{a.Name[len("xmlns:"):], a.Value})
		}
	}
	return sc
}

// qualify returns the namespace and local name of el's name in scope
// (the scope inside el, which includes its own declarations).
func (sc *nsScope) qualify(name string) (ns, local string, err error) {
	prefix, local, ok := strings.Cut(name, ":")
	if !ok {
		return sc.def, name, nil
	}
	if prefix == "xml" || prefix == "xmlns" {
		return "", local, ErrBadNamespacePrefix
	}
	if prefix == "" || local == "" {
		// "p:" or ":a" is no qualified name; taken apart it would give an
		// element with no name (found by FuzzScannerMatchesEncodingXML).
		return "", local, ErrBadNamespacePrefix
	}
	ns, ok = sc.lookup(prefix)
	if !ok {
		return "", local, ErrBadNamespacePrefix
	}
	return ns, local, nil
}

// fixedPrefix is the prefix an element of ns keeps in the canonical form.
func fixedPrefix(ns string) string {
	switch ns {
	case NSStream:
		return "stream"
	case NSDialback:
		return "db"
	}
	return ""
}

// canonicalize rewrites el, read in scope sc (outside el), into the
// canonical form; outDef is the default namespace el inherits in the
// output. It returns el's namespace.
func canonicalize(el *Element, sc nsScope, outDef string) (string, error) {
	in := sc.enter(el)
	ns, local, err := in.qualify(el.Name)
	if err != nil {
		return "", err
	}
	childDef := ns
	if p := fixedPrefix(ns); p != "" {
		el.Name = p + ":" + local
		removeAttr(el, "xmlns") // children say their own namespace
		if bound, ok := in.lookup(p); !ok || bound != ns {
			setAttr(el, "xmlns:"+p, ns)
		}
		childDef = outDef
	} else {
		el.Name = local
		if ns != outDef {
			setAttr(el, "xmlns", ns) // may be xmlns='': no namespace
		} else if el.HasAttr("xmlns") && el.NS() != ns {
			// A prefixed element's own default declaration, meant for
			// its children (who now carry what they need).
			removeAttr(el, "xmlns")
		}
	}
	for _, c := range el.Children {
		if _, err := canonicalize(c, in, childDef); err != nil {
			return "", err
		}
	}
	return ns, nil
}

// hasPrefixedName reports whether el or a descendant has a prefixed name.
func hasPrefixedName(el *Element) bool {
	if strings.IndexByte(el.Name, ':') >= 0 {
		return true
	}
	for _, c := range el.Children {
		if hasPrefixedName(c) {
			return true
		}
	}
	return false
}

// setAttr sets an attribute, keeping an empty value (SetAttr removes it).
func setAttr(el *Element, name, value string) {
	for i := range el.Attrs {
		if el.Attrs[i].Name == name {
			el.Attrs[i].Value = value
			return
		}
	}
	el.Attrs = append(el.Attrs, Attr{Name: name, Value: value})
}

func removeAttr(el *Element, name string) {
	for i := range el.Attrs {
		if el.Attrs[i].Name == name {
			el.Attrs = append(el.Attrs[:i], el.Attrs[i+1:]...)
			return
		}
	}
}

// streamScope checks a stream header (RFC 6120 §4.8): its element must be
// "stream" in http://etherx.jabber.org/streams, whatever the prefix. It
// returns the scope the header sets for the stream's top-level elements.
func streamScope(hdr *Element) (nsScope, error) {
	in := nsScope{}.enter(hdr)
	ns, local, err := in.qualify(hdr.Name)
	switch {
	case err != nil:
		return in, err // §4.9.3.2 bad-namespace-prefix
	case ns != NSStream:
		return in, ErrInvalidNamespace // §4.9.3.10 (also <html>: no namespace)
	case local != "stream":
		return in, ErrBadFormat
	}
	return in, nil
}

// resolveTop brings a top-level element read on a stream (scope sc, the
// header's) into the canonical form. A top-level element in no namespace
// at all (xmlns="" on a stanza) is invalid-namespace (RFC 6120 §4.9.3.10):
// a stanza is in the stream's content namespace.
func resolveTop(el *Element, sc nsScope, prefixed bool) error {
	if !prefixed {
		if ns, ok := ownNS(el); ok && ns == "" || !ok && sc.def == "" {
			return ErrInvalidNamespace
		}
		return nil
	}
	ns, err := canonicalize(el, sc, sc.def)
	if err != nil {
		return err
	}
	if ns == "" {
		return ErrInvalidNamespace
	}
	return nil
}

// UndeclaresNamespace reports an element that puts itself in no
// namespace (xmlns=""). As a top-level element of a client stream that is
// invalid-namespace: connectors that parse each element on its own
// (WebSocket frames, BOSH payloads) check it, as the stream reader does.
func UndeclaresNamespace(el *Element) bool {
	ns, ok := ownNS(el)
	return ok && ns == ""
}

func ownNS(el *Element) (string, bool) {
	for i := range el.Attrs {
		if el.Attrs[i].Name == "xmlns" {
			return el.Attrs[i].Value, true
		}
	}
	return "", false
}

// ParseNS parses one complete element as Parse does, then brings it into
// the canonical namespace form the stream reader returns: what a
// WebSocket frame or a BOSH body carries from a client. Parse alone keeps
// prefixes as written (stored data, parsed again, stays as it was).
func ParseNS(data []byte, lim Limits) (*Element, error) {
	el, err := Parse(data, lim)
	if err != nil {
		return nil, err
	}
	if hasPrefixedName(el) {
		if _, err := canonicalize(el, nsScope{}, ""); err != nil {
			return nil, err
		}
	}
	return el, nil
}
