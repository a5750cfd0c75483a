package wire

import (
	"bufio"
	"errors"
	"io"
)

// Limits bound what one peer can make us parse. They are enforced while
// bytes are read, before a stanza is allocated whole.
type Limits struct {
	// MaxStanzaBytes bounds one top-level element, counted in bytes on the
	// wire. Zero means DefaultMaxStanzaBytes.
	MaxStanzaBytes int
	// MaxDepth bounds element nesting inside a stanza. Zero means DefaultMaxDepth.
	MaxDepth int
}

// Defaults for Limits.
const (
	DefaultMaxStanzaBytes = 256 << 10
	DefaultMaxDepth       = 64
)

func (l Limits) withDefaults() Limits {
	if l.MaxStanzaBytes <= 0 {
		l.MaxStanzaBytes = DefaultMaxStanzaBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Reader reads one XML stream: a root header, then top-level elements.
// It is not safe for concurrent use; each session has one reader goroutine.
type Reader struct {
	sc     scanner
	fill   *fillReader
	lim    Limits
	header *Element
	scope  nsScope // what the header declares, for top-level elements
}

// NewReader reads a stream from r. OnFill, when set on the returned reader
// with SetOnFill, runs each time bytes arrive from r (a cheap hook for idle
// timers: it runs per network read, not per byte).
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	rd := &Reader{lim: lim, fill: &fillReader{r: r}}
	// A small buffer: an idle session holds it for as long as it is
	// connected. A stanza that does not fit is gathered in the scanner's
	// scratch, which it drops again after a large one.
	rd.sc.br = bufio.NewReaderSize(rd.fill, 512)
	rd.sc.max = lim.MaxStanzaBytes
	return rd
}

// SetMaxStanzaBytes changes the bound on each top-level element from the
// next one on (zero means DefaultMaxStanzaBytes): a connector holds an
// unauthenticated stream to a smaller bound than an authenticated one.
func (r *Reader) SetMaxStanzaBytes(n int) {
	if n <= 0 {
		n = DefaultMaxStanzaBytes
	}
	r.lim.MaxStanzaBytes = n
	r.sc.max = n
}

// SetOnFill installs a hook that runs after every read from the transport.
func (r *Reader) SetOnFill(fn func()) { r.fill.onFill = fn }

// Restart begins a new stream on the same transport, as after SASL success
// (RFC 6120 §6.4.6). Bytes already buffered are kept.
func (r *Reader) Restart() {
	r.header = nil
	r.sc.pendingEnd = false
	r.sc.mark()
}

// Buffered reports how many bytes are read from the transport but not yet
// parsed. STARTTLS must find none (RFC 6120 §5.4.3.3).
func (r *Reader) Buffered() int { return r.sc.br.Buffered() }

// Header returns the stream's root element (without children): the
// <stream:stream> start tag. The reader checks that it is the element
// "stream" in the streams namespace, whatever its prefix (an error
// otherwise: ErrInvalidNamespace, ErrBadNamespacePrefix or ErrBadFormat);
// the caller validates its attributes. Its name is returned as written.
//
// White space before the XML declaration is skipped: after STARTTLS or
// SASL the old stream's trailing white space (go-xmpp writes a newline
// after <starttls/> and </auth>) comes before the new stream's
// declaration, and RFC 6120 allows white space between elements.
func (r *Reader) Header() (*Element, error) {
	r.sc.mark()
	first := true
	for {
		kind, err := r.sc.next()
		if err != nil {
			return nil, err
		}
		switch kind {
		case tokDecl:
			if !first {
				return nil, ErrRestrictedXML
			}
		case tokText:
			if !isSpace(r.sc.text) {
				return nil, ErrNotWellFormed
			}
			r.sc.mark()
			continue
		case tokStart:
			hdr := r.sc.element()
			r.sc.mark()
			sc, err := streamScope(hdr)
			if err != nil {
				return nil, err
			}
			r.header, r.scope = hdr, sc
			return r.header, nil
		case tokEnd:
			return nil, ErrNotWellFormed
		}
		first = false
	}
}

// SkipSpace discards the white space at the start of what is buffered
// and reports how many bytes remain buffered after it. STARTTLS uses it:
// no data may follow <starttls/> (RFC 6120 §5.4.3.3) but white space
// between elements is no data.
func (r *Reader) SkipSpace() int {
	br := r.sc.br
	for br.Buffered() > 0 {
		b, _ := br.Peek(1)
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.Discard(1)
		default:
			return br.Buffered()
		}
	}
	return 0
}

// Next returns the next top-level element, skipping whitespace keepalives.
// It returns ErrStreamEnd when the peer closes the stream.
func (r *Reader) Next() (*Element, error) {
	if r.header == nil {
		return nil, errors.New("wire: Next called before Header")
	}
	r.sc.mark()
	r.sc.prefixed = false
	el, err := r.sc.tree(r.lim.MaxDepth, r.header.Name, nil)
	if err != nil {
		return nil, err
	}
	if err := resolveTop(el, r.scope, r.sc.prefixed); err != nil {
		return nil, err
	}
	return el, nil
}

// tree reads one top-level element and everything inside it, or, with a
// stack, the rest of the element at its bottom. streamName, when not
// empty, is the stream's root: its end tag ends the stream, and a second
// one inside it is an error.
func (s *scanner) tree(maxDepth int, streamName string, stack []*Element) (*Element, error) {
	// Text comes in pieces when CDATA sections split it. The pieces of one
	// slot (an element's Text, or its last child's Tail) gather in s.pend
	// and become one string at the next tag: concatenating a string per
	// piece went quadratic on a stanza of many small CDATA sections.
	var slot *string
	for {
		kind, err := s.next()
		if err != nil {
			return nil, err
		}
		if slot != nil && kind != tokText {
			*slot = string(s.pend)
			slot, s.pend = nil, s.pend[:0]
		}
		switch kind {
		case tokStart:
			if len(stack) >= maxDepth {
				return nil, ErrTooDeep
			}
			if len(stack) == 0 && streamName != "" && s.name == streamName {
				// A second stream header inside the stream (not after a
				// Restart) would otherwise swallow everything after it.
				return nil, ErrBadFormat
			}
			el := s.element()
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, el)
			}
			stack = append(stack, el)
		case tokEnd:
			if len(stack) == 0 {
				if streamName != "" && s.name == streamName {
					return nil, ErrStreamEnd
				}
				return nil, ErrNotWellFormed
			}
			top := stack[len(stack)-1]
			if top.Name != s.name {
				return nil, ErrNotWellFormed
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return top, nil
			}
		case tokText:
			if len(stack) == 0 {
				if !isSpace(s.text) {
					return nil, ErrBadFormat
				}
				s.mark() // whitespace keepalives never add up to a limit
				continue
			}
			if slot == nil {
				el := stack[len(stack)-1]
				if n := len(el.Children); n > 0 {
					slot = &el.Children[n-1].Tail
				} else {
					slot = &el.Text
				}
			}
			s.pend = append(s.pend, s.text...)
		case tokDecl:
			return nil, ErrRestrictedXML
		}
	}
}

// element makes an element of the current start tag.
func (s *scanner) element() *Element {
	el := &Element{Name: s.name}
	if len(s.attrs) > 0 {
		el.Attrs = make([]Attr, len(s.attrs))
		copy(el.Attrs, s.attrs)
	}
	return el
}

// Parse parses exactly one complete element, as a WebSocket frame or a BOSH
// body carries it.
func Parse(data []byte, lim Limits) (*Element, error) {
	lim = lim.withDefaults()
	if len(data) > lim.MaxStanzaBytes {
		return nil, ErrStanzaTooLarge
	}
	s := &scanner{data: data, max: len(data)}
	var root *Element
	decl := false
	for {
		kind, err := s.next()
		if err == io.EOF {
			if root == nil {
				return nil, ErrNotWellFormed
			}
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch kind {
		case tokText:
			if !isSpace(s.text) {
				return nil, ErrNotWellFormed
			}
		case tokDecl:
			if root != nil || decl {
				return nil, ErrRestrictedXML // a PI with the reserved target xml
			}
			decl = true
		case tokEnd:
			return nil, ErrNotWellFormed
		case tokStart:
			if root != nil {
				return nil, ErrNotWellFormed // a second root
			}
			root = s.element()
			if root, err = s.tree(lim.MaxDepth, "", []*Element{root}); err != nil {
				if err == io.EOF {
					return nil, ErrNotWellFormed
				}
				return nil, err
			}
		}
	}
}

func isSpace(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

type fillReader struct {
	r      io.Reader
	onFill func()
}

func (f *fillReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.onFill != nil {
		f.onFill()
	}
	return n, err
}
