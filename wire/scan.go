package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// scanner tokenizes the part of XML that XMPP streams may carry (RFC 6120
// §11.1): elements, attributes, character data, CDATA sections, the five
// predefined entities, character references, and one XML declaration. It
// replaces encoding/xml's Decoder, which reads a byte at a time through
// interfaces: in the login benchmark that parser was ~7% of the server's
// CPU and as much of the load tool's. The scanner finds a token's end in the
// bytes already buffered (a stanza usually arrives whole in one read),
// decodes in place when nothing needs decoding, and returns names and common
// attribute values as shared strings. Between stanzas it keeps no buffer
// larger than its bufio.Reader's.
//
// Comments, processing instructions other than the declaration, and DTDs
// are reported as ErrRestrictedXML as soon as they are recognized.
type scanner struct {
	br   *bufio.Reader // the stream; nil when scanning data
	data []byte        // a whole document (Parse), scanned from pos
	pos  int

	n, max int // bytes consumed since mark, and the most allowed

	raw  []byte // a token's bytes when they span reads
	dec  []byte // decoded text when it differs from the raw bytes
	pend []byte // pieces of one text slot (Reader.tree)

	// The current token.
	name       string
	attrs      []Attr // scratch: copied into each element
	text       []byte // character data, valid until the next call
	pendingEnd bool   // the start tag closed itself: its end comes next
	prefixed   bool   // an element name had a prefix (see namespace.go)
}

type tokenKind uint8

const (
	tokStart tokenKind = iota + 1 // s.name, s.attrs
	tokEnd                        // s.name
	tokText                       // s.text
	tokDecl                       // the XML declaration
)

// scratchKeep bounds the scratch the scanner keeps between stanzas, as
// much as the read buffer: a session that once sent a large stanza (an
// avatar, a vCard) must not keep its size while it idles.
const scratchKeep = 512

func (s *scanner) mark() {
	s.n = 0
	if cap(s.raw) > scratchKeep {
		s.raw = nil
	}
	if cap(s.dec) > scratchKeep {
		s.dec = nil
	}
	if cap(s.pend) > scratchKeep {
		s.pend = nil
	}
	if cap(s.attrs) > 32 {
		s.attrs = nil
	}
}

func syntaxError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotWellFormed}, args...)...)
}

// window returns the bytes that can be read without blocking, reading once
// when there are none, and never more than the stanza limit leaves.
func (s *scanner) window() ([]byte, error) {
	if s.br == nil && s.pos >= len(s.data) {
		return nil, io.EOF
	}
	room := s.max - s.n
	if room <= 0 {
		return nil, ErrStanzaTooLarge
	}
	var w []byte
	if s.br == nil {
		w = s.data[s.pos:]
	} else {
		if s.br.Buffered() == 0 {
			if _, err := s.br.Peek(1); err != nil {
				return nil, err
			}
		}
		w, _ = s.br.Peek(s.br.Buffered())
	}
	if len(w) > room {
		w = w[:room]
	}
	return w, nil
}

// peek returns at least k bytes (k is small) without consuming them.
func (s *scanner) peek(k int) ([]byte, error) {
	if s.max-s.n < k {
		return nil, ErrStanzaTooLarge
	}
	if s.br == nil {
		if len(s.data)-s.pos < k {
			return nil, syntaxError("unexpected end")
		}
		return s.data[s.pos:], nil
	}
	return s.br.Peek(k)
}

func (s *scanner) consume(k int) {
	s.n += k
	if s.br == nil {
		s.pos += k
		return
	}
	_, _ = s.br.Discard(k)
}

// collect consumes one token: end is called on each window and returns
// how many of its bytes belong to the token and whether the token ends
// there. The result aliases the read buffer when the token lies in one
// window, else s.raw; it is valid until the next read. On a read error it
// returns what it had gathered with the error.
func (s *scanner) collect(end func(w []byte) (int, bool)) ([]byte, error) {
	w, err := s.window()
	if err != nil {
		if err == io.EOF && s.br == nil {
			err = syntaxError("unexpected end") // a document cut short
		}
		return nil, err
	}
	n, done := end(w)
	if done {
		s.consume(n)
		return w[:n], nil
	}
	s.raw = append(s.raw[:0], w[:n]...)
	s.consume(n)
	for {
		if w, err = s.window(); err != nil {
			if err == io.EOF && s.br == nil {
				err = syntaxError("unexpected end") // a document cut short
			}
			return s.raw, err
		}
		n, done = end(w)
		s.raw = append(s.raw, w[:n]...)
		s.consume(n)
		if done {
			return s.raw, nil
		}
	}
}

// next reads one token.
func (s *scanner) next() (tokenKind, error) {
	if s.pendingEnd {
		s.pendingEnd = false
		return tokEnd, nil
	}
	w, err := s.window()
	if err != nil {
		return 0, err
	}
	if w[0] != '<' {
		return s.charData()
	}
	p, err := s.peek(2)
	if err != nil {
		return 0, err
	}
	switch p[1] {
	case '/':
		return s.endTag()
	case '?':
		return s.procInst()
	case '!':
		return s.bang()
	}
	return s.startTag()
}

// charData reads text up to the next '<' (or the end of a document).
func (s *scanner) charData() (tokenKind, error) {
	var raw []byte
	if s.br == nil {
		rest := s.data[s.pos:]
		i := bytes.IndexByte(rest, '<')
		if i < 0 {
			i = len(rest)
		}
		if s.max-s.n < i {
			return 0, ErrStanzaTooLarge
		}
		raw = rest[:i]
		s.consume(i)
	} else {
		var err error
		raw, err = s.collect(func(w []byte) (int, bool) {
			if i := bytes.IndexByte(w, '<'); i >= 0 {
				return i, true
			}
			return len(w), false
		})
		// Text cut short by the end of the stream is still reported, so
		// that text where none may stand is named as such.
		if err != nil && (len(raw) == 0 || err == ErrStanzaTooLarge) {
			return 0, err
		}
	}
	t, err := s.decode(raw, 0)
	if err != nil {
		return 0, err
	}
	s.text = t
	return tokText, nil
}

// tagEnd finds the '>' that ends a tag, skipping quoted attribute values
// (where '>' may appear).
func tagEnd() func(w []byte) (int, bool) {
	var quote byte
	return func(w []byte) (int, bool) {
		for i := 0; i < len(w); i++ {
			c := w[i]
			if quote != 0 {
				if j := bytes.IndexByte(w[i:], quote); j >= 0 {
					i += j
					quote = 0
					continue
				}
				return len(w), false
			}
			switch c {
			case '"', '\'':
				quote = c
			case '>':
				return i + 1, true
			}
		}
		return len(w), false
	}
}

// terminator finds the end of a token closed by a fixed sequence (such as
// "?>" or "]]>"), which may straddle two reads. It matches the way KMP
// does, so "]]]>" ends a CDATA section.
func terminator(seq string) func(w []byte) (int, bool) {
	// fail[i] is the length of the longest proper prefix of seq[:i+1]
	// that is also its suffix.
	fail := make([]int, len(seq))
	for i, k := 1, 0; i < len(seq); i++ {
		for k > 0 && seq[i] != seq[k] {
			k = fail[k-1]
		}
		if seq[i] == seq[k] {
			k++
		}
		fail[i] = k
	}
	matched := 0
	return func(w []byte) (int, bool) {
		for i, c := range w {
			for matched > 0 && c != seq[matched] {
				matched = fail[matched-1]
			}
			if c == seq[matched] {
				matched++
			}
			if matched == len(seq) {
				return i + 1, true
			}
		}
		return len(w), false
	}
}

func (s *scanner) startTag() (tokenKind, error) {
	raw, err := s.collect(tagEnd())
	if err != nil {
		return 0, err
	}
	// raw is "<name ...>" or "<name .../>".
	name, i, err := scanName(raw, 1)
	if err != nil {
		return 0, err
	}
	s.name = name
	if strings.IndexByte(name, ':') >= 0 {
		s.prefixed = true
	}
	s.attrs = s.attrs[:0]
	last := len(raw) - 1 // the '>'
	for {
		j := skipSpace(raw, i)
		switch raw[j] {
		case '/':
			if j+1 != last {
				return 0, syntaxError("expected /> in <%s>", name)
			}
			s.pendingEnd = true
			fallthrough
		case '>':
			if a, dup := repeatedAttr(s.attrs); dup {
				return 0, syntaxError("attribute %s twice in <%s>", a, name)
			}
			return tokStart, nil
		}
		if j == i {
			return 0, syntaxError("expected space before attribute in <%s>", name)
		}
		aname, k, err := scanName(raw, j)
		if err != nil {
			return 0, err
		}
		k = skipSpace(raw, k)
		if raw[k] != '=' {
			return 0, syntaxError("attribute %s without value in <%s>", aname, name)
		}
		k = skipSpace(raw, k+1)
		q := raw[k]
		if q != '"' && q != '\'' {
			return 0, syntaxError("unquoted value of %s in <%s>", aname, name)
		}
		end := bytes.IndexByte(raw[k+1:last], q)
		if end < 0 {
			return 0, syntaxError("unterminated value of %s in <%s>", aname, name)
		}
		val, err := s.decode(raw[k+1:k+1+end], q)
		if err != nil {
			return 0, err
		}
		s.attrs = append(s.attrs, Attr{Name: aname, Value: internValue(val)})
		i = k + 1 + end + 1
	}
}

// repeatedAttr reports a name given twice (XML 1.0's Unique Att Spec). A
// tag carries a handful of attributes; one with thousands (a stanza may be
// 256 KiB) is checked through a map, not in quadratic time.
func repeatedAttr(attrs []Attr) (string, bool) {
	if len(attrs) <= 16 {
		for i := 1; i < len(attrs); i++ {
			for j := 0; j < i; j++ {
				if attrs[i].Name == attrs[j].Name {
					return attrs[i].Name, true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, len(attrs))
	for _, a := range attrs {
		if _, ok := seen[a.Name]; ok {
			return a.Name, true
		}
		seen[a.Name] = struct{}{}
	}
	return "", false
}

func (s *scanner) endTag() (tokenKind, error) {
	raw, err := s.collect(tagEnd())
	if err != nil {
		return 0, err
	}
	name, i, err := scanName(raw, 2)
	if err != nil {
		return 0, err
	}
	if j := skipSpace(raw, i); j != len(raw)-1 {
		return 0, syntaxError("invalid characters in </%s>", name)
	}
	s.name = name
	return tokEnd, nil
}

// procInst reads "<?target ...?>". Only the XML declaration is allowed,
// and only version 1.0 in UTF-8.
func (s *scanner) procInst() (tokenKind, error) {
	s.consume(2) // "<?", so that "<?>" does not end itself
	raw, err := s.collect(terminator("?>"))
	if err != nil {
		return 0, err
	}
	body := raw[:len(raw)-2]
	target, i, err := scanName(body, 0)
	if err != nil {
		return 0, err
	}
	if target != "xml" {
		return 0, ErrRestrictedXML
	}
	if err := checkDecl(body[i:]); err != nil {
		return 0, err
	}
	return tokDecl, nil
}

// bang reads what starts with "<!": a CDATA section is text; a comment or
// a DTD is restricted.
func (s *scanner) bang() (tokenKind, error) {
	const open = "<![CDATA["
	p, err := s.peek(3)
	if err != nil {
		return 0, err
	}
	if p[2] != '[' {
		return 0, ErrRestrictedXML // <!-- comment --> or <!DOCTYPE ...>
	}
	if p, err = s.peek(len(open)); err != nil {
		return 0, err
	}
	if string(p[:len(open)]) != open {
		return 0, syntaxError("invalid <![ sequence")
	}
	s.consume(len(open))
	raw, err := s.collect(terminator("]]>"))
	if err != nil {
		return 0, err
	}
	t, err := s.decode(raw[:len(raw)-3], cdata)
	if err != nil {
		return 0, err
	}
	s.text = t
	return tokText, nil
}

// cdata tells decode that raw is a CDATA section's content (no entities).
const cdata = 1

// decode checks character data and resolves references and line ends.
// quote is 0 for text, cdata for a CDATA section, or the quote around an
// attribute value. The result is raw itself when nothing changes.
func (s *scanner) decode(raw []byte, quote byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf && plainText[c] {
			i++
			continue
		}
		if c == '\r' || c == '&' && quote != cdata {
			return s.decodeSlow(raw, i, quote)
		}
		n, err := checkChar(raw, i, quote)
		if err != nil {
			return nil, err
		}
		i += n
	}
	return raw, nil
}

// decodeSlow copies raw into s.dec from i on, resolving references and
// turning \r\n and \r into \n (XML 1.0 §2.11).
func (s *scanner) decodeSlow(raw []byte, i int, quote byte) ([]byte, error) {
	out := append(s.dec[:0], raw[:i]...)
	for i < len(raw) {
		c := raw[i]
		switch {
		case c == '\r':
			out = append(out, '\n')
			i++
			if i < len(raw) && raw[i] == '\n' {
				i++
			}
		case c == '&' && quote != cdata:
			end := bytes.IndexByte(raw[i:], ';')
			if end < 0 {
				return nil, syntaxError("invalid character entity (no semicolon)")
			}
			ref := raw[i+1 : i+end]
			r, ok := resolveRef(ref)
			if !ok {
				return nil, syntaxError("invalid character entity &%s;", ref)
			}
			out = utf8.AppendRune(out, r)
			i += end + 1
		case c < utf8.RuneSelf && plainText[c]:
			out = append(out, c)
			i++
		default:
			n, err := checkChar(raw, i, quote)
			if err != nil {
				return nil, err
			}
			out = append(out, raw[i:i+n]...)
			i += n
		}
	}
	s.dec = out
	return out, nil
}

// checkChar checks the character at raw[i] that is not plain ASCII text
// and returns its length in bytes.
func checkChar(raw []byte, i int, quote byte) (int, error) {
	c := raw[i]
	switch {
	case c >= utf8.RuneSelf:
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 1 {
			return 0, syntaxError("invalid UTF-8")
		}
		if !isXMLChar(r) {
			return 0, syntaxError("illegal character code %U", r)
		}
		return size, nil
	case c == ']':
		if quote == 0 && i+2 < len(raw) && raw[i+1] == ']' && raw[i+2] == '>' {
			return 0, syntaxError("unescaped ]]> not in CDATA section")
		}
		return 1, nil
	case c == '<':
		// Text ends before a '<'; a CDATA section may hold one.
		if quote != cdata {
			return 0, syntaxError("unescaped < inside quoted string")
		}
		return 1, nil
	case c == '&': // in CDATA
		return 1, nil
	}
	return 0, syntaxError("illegal character code %U", rune(c))
}

// resolveRef resolves "lt", "#60" or "#x3C" (between & and ;).
func resolveRef(ref []byte) (rune, bool) {
	switch string(ref) {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "apos":
		return '\'', true
	case "quot":
		return '"', true
	}
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	digits, base := ref[1:], rune(10)
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 || len(digits) > 8 {
		return 0, false
	}
	var r rune
	for _, d := range digits {
		var v rune
		switch {
		case '0' <= d && d <= '9':
			v = rune(d - '0')
		case base == 16 && 'a' <= d && d <= 'f':
			v = rune(d-'a') + 10
		case base == 16 && 'A' <= d && d <= 'F':
			v = rune(d-'A') + 10
		default:
			return 0, false
		}
		r = r*base + v
	}
	return r, isXMLChar(r)
}

// isXMLChar is XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// plainText marks the ASCII bytes character data carries as they are.
var plainText = func() (t [128]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = true
	}
	t['\t'], t['\n'] = true, true
	t['&'], t['<'], t[']'] = false, false, false
	return t
}()

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanName reads an XML name at b[i:] and returns it with the index after
// it. A name has at most one colon (a namespace prefix).
func scanName(b []byte, i int) (string, int, error) {
	start, colons := i, 0
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			if !nameByte[c] || i == start && !nameStartByte[c] {
				break
			}
			if c == ':' {
				colons++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || !isNameRune(r, i == start) {
			break
		}
		i += size
	}
	if i == start {
		if i < len(b) {
			return "", i, syntaxError("invalid XML name at %q", b[i])
		}
		return "", i, syntaxError("expected a name")
	}
	if colons > 1 {
		return "", i, syntaxError("invalid XML name %q", b[start:i])
	}
	return internName(b[start:i]), i, nil
}

var nameStartByte, nameByte = func() (start, any [128]bool) {
	for c := 'a'; c <= 'z'; c++ {
		start[c], start[c-'a'+'A'] = true, true
	}
	start['_'], start[':'] = true, true
	any = start
	for c := '0'; c <= '9'; c++ {
		any[c] = true
	}
	any['-'], any['.'] = true, true
	return start, any
}()

// isNameRune is XML 1.0 (fifth edition) NameStartChar / NameChar beyond ASCII.
func isNameRune(r rune, first bool) bool {
	switch {
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return !first && (r == 0xB7 || r >= 0x300 && r <= 0x36F || r >= 0x203F && r <= 0x2040)
}

// checkDecl checks what follows "<?xml" in an XML declaration against
// production 23 of XML 1.0: a version, which must be 1.0 (RFC 6120 11.1
// speaks XML 1.0), then an optional encoding, which must be UTF-8
// (RFC 6120 11.6), then an optional standalone, each after white space,
// in that order and once. Anything else is not a declaration: a
// processing instruction with the reserved target "xml", which XML 1.0
// does not allow.
func checkDecl(body []byte) error {
	params := [...]struct {
		name     string
		required bool
		valid    func(string) bool
	}{
		{"version", true, func(v string) bool { return v == "1.0" }},
		{"encoding", false, func(v string) bool { return asciiEqualFold(v, "utf-8") }},
		{"standalone", false, func(v string) bool { return v == "yes" || v == "no" }},
	}
	i := 0
	for _, p := range params {
		j := skipSpace(body, i)
		if j == i || !bytes.HasPrefix(body[j:], []byte(p.name)) {
			if p.required {
				return syntaxError("<?xml without version='1.0'")
			}
			continue
		}
		v, next, ok := declValue(body, j+len(p.name))
		if !ok {
			return syntaxError("malformed %s in <?xml", p.name)
		}
		if !p.valid(v) {
			return syntaxError("unsupported XML %s %q", p.name, v)
		}
		i = next
	}
	if skipSpace(body, i) != len(body) {
		return syntaxError("unexpected characters in <?xml")
	}
	return nil
}

// declValue reads Eq and a quoted value from body[i:] and returns the
// value and the index after its closing quote.
func declValue(body []byte, i int) (string, int, bool) {
	i = skipSpace(body, i)
	if i >= len(body) || body[i] != '=' {
		return "", 0, false
	}
	i = skipSpace(body, i+1)
	if i >= len(body) || body[i] != '\'' && body[i] != '"' {
		return "", 0, false
	}
	end := bytes.IndexByte(body[i+1:], body[i])
	if end < 0 {
		return "", 0, false
	}
	return string(body[i+1 : i+1+end]), i + 2 + end, true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
