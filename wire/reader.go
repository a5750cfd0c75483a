package wire

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
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
	src    *countingReader
	dec    *xml.Decoder
	lim    Limits
	header *Element
}

// NewReader reads a stream from r. OnFill, when set on the returned reader
// with SetOnFill, runs each time bytes arrive from r (a cheap hook for idle
// timers: it runs per network read, not per byte).
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	cr := &countingReader{max: lim.MaxStanzaBytes}
	cr.fill = &fillReader{r: r}
	// A small buffer: an idle session holds it for as long as it is
	// connected, and stanzas are parsed a byte at a time anyway.
	cr.br = bufio.NewReaderSize(cr.fill, 512)
	rd := &Reader{src: cr, lim: lim}
	rd.dec = newDecoder(cr)
	return rd
}

// SetOnFill installs a hook that runs after every read from the transport.
func (r *Reader) SetOnFill(fn func()) { r.src.fill.onFill = fn }

func newDecoder(r io.Reader) *xml.Decoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	return d
}

// Restart begins a new stream on the same transport, as after SASL success
// (RFC 6120 §6.4.6). Bytes already buffered are kept.
func (r *Reader) Restart() {
	r.dec = newDecoder(r.src)
	r.header = nil
	r.src.mark()
}

// Buffered reports how many bytes are read from the transport but not yet
// parsed. STARTTLS must find none (RFC 6120 §5.4.3.3).
func (r *Reader) Buffered() int { return r.src.br.Buffered() }

// Header returns the stream's root element (without children): the
// <stream:stream> start tag, whose attributes the caller validates.
func (r *Reader) Header() (*Element, error) {
	r.src.mark()
	first := true
	for {
		tok, err := r.dec.RawToken()
		if err != nil {
			return nil, r.convert(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" || !first {
				return nil, ErrRestrictedXML
			}
		case xml.CharData:
			if !isSpace(t) {
				return nil, ErrNotWellFormed
			}
		case xml.StartElement:
			r.header = startToElement(t)
			r.src.mark()
			return r.header, nil
		case xml.EndElement:
			return nil, ErrNotWellFormed
		default: // comments, directives (DTDs)
			return nil, ErrRestrictedXML
		}
		first = false
	}
}

// Next returns the next top-level element, skipping whitespace keepalives.
// It returns ErrStreamEnd when the peer closes the stream.
func (r *Reader) Next() (*Element, error) {
	if r.header == nil {
		return nil, errors.New("wire: Next called before Header")
	}
	r.src.mark()
	var stack []*Element
	for {
		tok, err := r.dec.RawToken()
		if err != nil {
			return nil, r.convert(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= r.lim.MaxDepth {
				return nil, ErrTooDeep
			}
			if len(stack) == 0 && joinName(t.Name) == r.header.Name {
				// A second stream header inside the stream (not after a
				// Restart) would otherwise swallow everything after it.
				return nil, ErrBadFormat
			}
			el := startToElement(t)
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, el)
			}
			stack = append(stack, el)
		case xml.EndElement:
			name := joinName(t.Name)
			if len(stack) == 0 {
				if name == r.header.Name {
					return nil, ErrStreamEnd
				}
				return nil, ErrNotWellFormed
			}
			top := stack[len(stack)-1]
			if top.Name != name {
				return nil, ErrNotWellFormed
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return top, nil
			}
		case xml.CharData:
			if len(stack) == 0 {
				if !isSpace(t) {
					return nil, ErrBadFormat
				}
				r.src.mark() // whitespace keepalives never add up to a limit
				continue
			}
			appendCharData(stack[len(stack)-1], t)
		case xml.ProcInst, xml.Comment, xml.Directive:
			return nil, ErrRestrictedXML
		}
	}
}

// appendCharData adds text to the right slot: the element's Text when it has
// no children yet, otherwise the Tail of its last child.
func appendCharData(el *Element, t xml.CharData) {
	if n := len(el.Children); n > 0 {
		el.Children[n-1].Tail += string(t)
		return
	}
	el.Text += string(t)
}

func (r *Reader) convert(err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return ErrStanzaTooLarge
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return err
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		// encoding/xml reports a reader failure as a SyntaxError wrapping
		// "unexpected EOF"; keep limit and EOF errors distinguishable.
		if r.src.tooLarge {
			return ErrStanzaTooLarge
		}
		if r.src.err != nil {
			return r.src.err
		}
		return fmt.Errorf("%w: %s", ErrNotWellFormed, se.Msg)
	}
	if r.src.tooLarge {
		return ErrStanzaTooLarge
	}
	return err
}

// Parse parses exactly one complete element, as a WebSocket frame or a BOSH
// body carries it.
func Parse(data []byte, lim Limits) (*Element, error) {
	lim = lim.withDefaults()
	if len(data) > lim.MaxStanzaBytes {
		return nil, ErrStanzaTooLarge
	}
	d := newDecoder(bytes.NewReader(data))
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
			return nil, fmt.Errorf("%w: %v", ErrNotWellFormed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, ErrNotWellFormed // a second root
			}
			if len(stack) >= lim.MaxDepth {
				return nil, ErrTooDeep
			}
			el := startToElement(t)
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, el)
			} else {
				root = el
			}
			stack = append(stack, el)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].Name != joinName(t.Name) {
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
		case xml.Comment, xml.Directive:
			return nil, ErrRestrictedXML
		}
	}
}

func startToElement(t xml.StartElement) *Element {
	el := &Element{Name: joinName(t.Name)}
	if len(t.Attr) > 0 {
		el.Attrs = make([]Attr, len(t.Attr))
		for i, a := range t.Attr {
			el.Attrs[i] = Attr{Name: joinName(a.Name), Value: a.Value}
		}
	}
	return el
}

func joinName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
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

var errTooLarge = errors.New("wire: limit reached")

// countingReader counts bytes since the last mark and fails the read that
// would pass the stanza limit, so encoding/xml never buffers more than the
// limit for one stanza (a 1 GiB text node fails after MaxStanzaBytes).
type countingReader struct {
	br       *bufio.Reader
	fill     *fillReader
	n        int
	max      int
	tooLarge bool
	err      error
}

func (c *countingReader) mark() { c.n = 0 }

func (c *countingReader) ReadByte() (byte, error) {
	if c.n >= c.max {
		c.tooLarge = true
		return 0, errTooLarge
	}
	b, err := c.br.ReadByte()
	if err != nil {
		c.err = err
		return 0, err
	}
	c.n++
	return b, nil
}

func (c *countingReader) Read(p []byte) (int, error) {
	room := c.max - c.n
	if room <= 0 {
		c.tooLarge = true
		return 0, errTooLarge
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := c.br.Read(p)
	c.n += n
	if err != nil {
		c.err = err
	}
	return n, err
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
