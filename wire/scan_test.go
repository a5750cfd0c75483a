package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// refParse is the reader Aviary had before the scanner: encoding/xml's
// RawToken in strict mode, with the same rules on top. The differential
// fuzz test holds the scanner to it.
func refParse(data []byte, maxDepth int) (*Element, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var stack []*Element
	var root *Element
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			if root == nil || len(stack) > 0 {
				return nil, ErrNotWellFormed
			}
			return root, nil
		}
		if err != nil {
			return nil, ErrNotWellFormed
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, ErrNotWellFormed
			}
			if len(stack) >= maxDepth {
				return nil, ErrTooDeep
			}
			el := &Element{Name: refJoin(t.Name)}
			for _, a := range t.Attr {
				el.Attrs = append(el.Attrs, Attr{Name: refJoin(a.Name), Value: a.Value})
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, el)
			} else {
				root = el
			}
			stack = append(stack, el)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].Name != refJoin(t.Name) {
				return nil, ErrNotWellFormed
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if !isSpace(t) {
					return nil, ErrNotWellFormed
				}
				continue
			}
			appendCharData(stack[len(stack)-1], t)
		case xml.ProcInst:
			if t.Target != "xml" || root != nil {
				return nil, ErrRestrictedXML
			}
		default:
			return nil, ErrRestrictedXML
		}
	}
}

// appendCharData is how the old reader placed text: the element's Text
// when it has no children yet, otherwise the Tail of its last child.
func appendCharData(el *Element, t []byte) {
	if n := len(el.Children); n > 0 {
		el.Children[n-1].Tail += string(t)
		return
	}
	el.Text += string(t)
}

func refJoin(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// stricter reports inputs the scanner rejects on purpose where
// encoding/xml accepts them: XML 1.0 says they are not well-formed.
// strictDecl is a leading XML declaration as the scanner takes it.
var strictDecl = regexp.MustCompile(`^[ \t\r\n]*<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*('1\.0'|"1\.0")` +
	`([ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*('(?i:utf-8)'|"(?i:utf-8)"))?` +
	`([ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*('(yes|no)'|"(yes|no)"))?[ \t\r\n]*\?>`)

func stricter(data []byte, ref *Element) bool {
	// A repeated attribute (WFC: Unique Att Spec).
	var dup func(*Element) bool
	dup = func(e *Element) bool {
		seen := map[string]bool{}
		for _, a := range e.Attrs {
			if seen[a.Name] {
				return true
			}
			seen[a.Name] = true
		}
		for _, c := range e.Children {
			if dup(c) {
				return true
			}
		}
		return false
	}
	if dup(ref) {
		return true
	}
	// Attributes not separated by white space (production 40), names
	// outside XML 1.0's fifth edition (encoding/xml uses older tables), a
	// reference to a surrogate (encoding/xml makes it U+FFFD).
	for i := 0; i+1 < len(data); i++ {
		if (data[i] == '"' || data[i] == '\'') && nameStartByte[data[i+1]&0x7f] && data[i+1] < 0x80 {
			return true
		}
	}
	// Processing instructions other than one XML declaration before the
	// element, written as production 23 says (version first, then
	// encoding and standalone; encoding/xml takes any order, none, or a
	// second declaration).
	decl := strictDecl.FindIndex(data)
	rest := data
	if decl != nil {
		rest = data[decl[1]:]
	}
	if bytes.Contains(rest, []byte("<?")) {
		return true
	}
	return !utf8.Valid(data) || bytes.ContainsAny(data, "\u00b7") ||
		bytes.Contains(data, []byte("&#")) || hasNonASCIIName(data)
}

// hasNonASCIIName reports a non-ASCII byte inside markup outside quotes:
// the scanner takes names from XML 1.0's fifth edition, encoding/xml from
// the older tables, and they differ beyond ASCII.
func hasNonASCIIName(data []byte) bool {
	inTag, quote := false, byte(0)
	for _, c := range data {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '<':
			inTag = true
		case c == '>':
			inTag = false
		case inTag && (c == '"' || c == '\''):
			quote = c
		case inTag && c >= 0x80:
			return true
		}
	}
	return false
}

// The scanner accepts what encoding/xml accepted (with the exceptions in
// stricter), rejects what it rejected, and builds the same tree; read a few
// bytes at a time through the stream reader, it builds the same tree again.
func FuzzScannerMatchesEncodingXML(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b' type="chat"><body>hi &amp; &lt;3 &#x1F600; &#65;</body></message>`,
		`<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`,
		`<a x='>' y="'"><![CDATA[<b> & ]] >]]>tail</a>`,
		"<a>\r\n line\r end</a>",
		`<a><!-- c --></a>`, `<a><?pi x?></a>`, `<!DOCTYPE a><a/>`, `<?xml version='1.0'?><a/>`,
		`<a:b:c/>`, `<a b='1' b='2'/>`, `<a b='1'c='2'/>`, `<a>]]></a>`, `<a>&bogus;</a>`, `<a b=c/>`,
		"<a>\x00</a>", "<a>\xff</a>", `<é/>`, `<a  b = "1" />`, `</a>`, `<a></b>`, `<a>`, ` <a/> `,
		`<c:message xmlns:c='jabber:client' xmlns='urn:x'><c:body>hi</c:body><y/></c:message>`,
		`<message xmlns=''/>`, `<x:message/>`, `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>`,
		`<d:result xmlns:d='jabber:server:dialback' to='a'>k</d:result>`, `<p:a xmlns:p=''/>`, `<xml:a/>`,
		`<p: xmlns:p='7'/>`, `<: xmlns:p='7'/>`, `<:a/>`, `<a><p: xmlns:p='7'/></a>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const depth = 16
		ref, refErr := refParse(data, depth)
		got, err := Parse(data, Limits{MaxStanzaBytes: 1 << 20, MaxDepth: depth})
		switch {
		case refErr != nil && err != nil:
			return
		case refErr == nil && err != nil:
			if stricter(data, ref) {
				return
			}
			t.Fatalf("scanner rejects %q (%v); encoding/xml gave %s", data, err, ref)
		case refErr != nil && err == nil:
			if hasNonASCIIName(data) {
				return
			}
			t.Fatalf("scanner accepts %q as %s; encoding/xml: %v", data, got, refErr)
		}
		if got.String() != ref.String() || got.Text != ref.Text {
			t.Fatalf("%q:\nscanner      %s\nencoding/xml %s", data, got, ref)
		}
		// The same element through the stream reader, in small reads.
		in := header + string(data) + "</stream:stream>"
		r := NewReader(iotest.HalfReader(iotest.OneByteReader(strings.NewReader(in))), Limits{MaxStanzaBytes: 1 << 20, MaxDepth: depth})
		if _, err := r.Header(); err != nil {
			t.Fatal(err)
		}
		// The reader returns the canonical namespace form (namespace.go).
		want := ref.Copy()
		wantErr := resolveTop(want, testHeaderScope(t), hasPrefixedName(want))
		el, err := r.Next()
		if err != nil {
			if bytes.Contains(data, []byte("stream:stream")) || bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("<?xml")) {
				return // a second header, or a declaration, inside a stream
			}
			if wantErr != nil && errors.Is(err, wantErr) {
				return
			}
			t.Fatalf("stream reader: %v on %q", err, data)
		}
		if wantErr != nil {
			t.Fatalf("stream reader accepted %q as %s; want %v", data, el, wantErr)
		}
		if el.String() != want.String() {
			t.Fatalf("stream reader built %s, want %s", el, want)
		}
		checkNamespaces(t, data, el)
		if _, err := r.Next(); !errors.Is(err, ErrStreamEnd) {
			t.Fatalf("after the element: %v", err)
		}
	})
}

// Tokens that straddle reads of every size come out whole.
func TestScannerAcrossReads(t *testing.T) {
	body := strings.Repeat("x", 700) + "&amp;\r\n" + strings.Repeat("é", 300)
	in := header + `<message to='a@b' id='` + strings.Repeat("i", 600) + `'><body>` + body + `</body><![CDATA[` + strings.Repeat("]", 5) + `]]></message>`
	want := strings.Repeat("x", 700) + "&\n" + strings.Repeat("é", 300)
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
	} {
		r := NewReader(wrap(strings.NewReader(in)), Limits{})
		if _, err := r.Header(); err != nil {
			t.Fatal(err)
		}
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.ChildText("body", ""); got != want {
			t.Fatalf("body = %q…", got[:40])
		}
		if m.Attr("id") != strings.Repeat("i", 600) || len(m.Children) != 1 || m.Children[0].Tail != "]]]]]" {
			t.Fatalf("message = %.200s", m)
		}
	}
}

// A large stanza does not leave its size behind in an idle session.
func TestScannerDropsLargeScratch(t *testing.T) {
	in := header + "<message><body>" + strings.Repeat("y", 100<<10) + "</body></message>"
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.sc.mark()
	if cap(r.sc.raw) > scratchKeep || cap(r.sc.dec) > scratchKeep {
		t.Fatalf("scratch kept: raw %d, dec %d bytes", cap(r.sc.raw), cap(r.sc.dec))
	}
}

// A tag with thousands of attributes parses (the repeat check does not go
// quadratic), and one repeated name among them is still refused.
func TestScannerManyAttributes(t *testing.T) {
	var b strings.Builder
	b.WriteString("<x")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&b, " a%d='v'", i)
	}
	tag := b.String()
	el, err := Parse([]byte(tag+"/>"), Limits{})
	if err != nil || len(el.Attrs) != 5000 || el.Attr("a4999") != "v" {
		t.Fatalf("5,000 attributes: %v", err)
	}
	if _, err := Parse([]byte(tag+" a17='w'/>"), Limits{}); !errors.Is(err, ErrNotWellFormed) {
		t.Fatalf("a repeated attribute among 5,001: %v", err)
	}
	if _, err := Parse([]byte("<x a='1' b='2' a='3'></x>"), Limits{}); !errors.Is(err, ErrNotWellFormed) {
		t.Fatalf("a repeated attribute among 3: %v", err)
	}
}

// testHeaderScope is the scope the test header declares.
func testHeaderScope(t *testing.T) nsScope {
	r := NewReader(strings.NewReader(header), Limits{})
	if _, err := r.Header(); err != nil {
		t.Fatal(err)
	}
	return r.scope
}

// checkNamespaces holds the canonical form to encoding/xml's namespace
// resolution (Decoder.Token): each element of el, in document order, is
// in the namespace encoding/xml gives the element at the same place of
// header+data.
func checkNamespaces(t *testing.T, data []byte, el *Element) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(header + string(data)))
	var got []string
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			got = append(got, se.Name.Space+" "+se.Name.Local)
		}
	}
	if len(got) == 0 {
		t.Fatalf("encoding/xml found no elements in %q", data)
	}
	got = got[1:] // the header
	var want []string
	var walk func(e *Element, def string)
	walk = func(e *Element, def string) {
		ns, local := def, e.Name
		if p, l, ok := strings.Cut(e.Name, ":"); ok {
			switch p {
			case "stream":
				ns = NSStream
			case "db":
				ns = NSDialback
			default:
				t.Fatalf("canonical form has prefix %q in %s", p, el)
			}
			local = l
		} else if v, ok := ownNS(e); ok {
			ns, def = v, v
		} else {
			def = ns
		}
		want = append(want, ns+" "+local)
		for _, c := range e.Children {
			walk(c, def)
		}
	}
	walk(el, NSClient)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q: namespaces\nencoding/xml %q\ncanonical    %q (%s)", data, got, want, el)
	}
}

// An XML declaration is production 23 of XML 1.0 or an error: version 1.0
// first, then encoding UTF-8 and standalone, once, before the element.
func TestDeclarationGrammar(t *testing.T) {
	lim := Limits{MaxStanzaBytes: 1 << 20, MaxDepth: 16}
	for _, s := range []string{
		`<?xml version='1.0'?><a/>`,
		`<?xml version="1.0" encoding="UTF-8"?><a/>`,
		`<?xml version='1.0' encoding='utf-8' standalone='yes' ?><a/>`,
		"\n<?xml version = '1.0'\t?>\n<a/>",
	} {
		if _, err := Parse([]byte(s), lim); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{
		`<?xml?><a/>`,                                // no version
		`<?xml ?><a/>`,                               // no version
		`<?xml encoding='utf-8'?><a/>`,               // no version
		`<?xml version='1.1'?><a/>`,                  // not 1.0
		`<?xml version=''?><a/>`,                     // empty version
		`<?xml encoding='utf-8' version='1.0'?><a/>`, // out of order
		`<?xml version='1.0' version='1.0'?><a/>`,    // twice
		`<?xml version='1.0'encoding='utf-8'?><a/>`,  // no space between
		`<?xml version='1.0' encoding='latin1'?><a/>`,
		`<?xml version='1.0' standalone='maybe'?><a/>`,
		`<?xml version='1.0' x='1'?><a/>`,
		`<?xml version='1.0'?><?xml version='1.0'?><a/>`, // a second one
		`<?xml?><?xml??><A/>`,                            // found by fuzzing
		`<a/><?xml version='1.0'?>`,
	} {
		if el, err := Parse([]byte(s), lim); err == nil {
			t.Errorf("%q accepted as %s", s, el)
		}
	}
}
