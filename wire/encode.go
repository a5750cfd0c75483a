package wire

import (
	"bytes"
	"io"
	"sync"
)

// WriteTo appends the element's XML to buf. It never fails: buffers grow.
func (e *Element) WriteTo(buf *bytes.Buffer) {
	buf.WriteByte('<')
	buf.WriteString(e.Name)
	for _, a := range e.Attrs {
		buf.WriteByte(' ')
		buf.WriteString(a.Name)
		buf.WriteString(`="`)
		escapeAttr(buf, a.Value)
		buf.WriteByte('"')
	}
	if len(e.Children) == 0 && e.Text == "" {
		buf.WriteString("/>")
		return
	}
	buf.WriteByte('>')
	escapeText(buf, e.Text)
	for _, c := range e.Children {
		c.WriteTo(buf)
		escapeText(buf, c.Tail)
	}
	buf.WriteString("</")
	buf.WriteString(e.Name)
	buf.WriteByte('>')
}

// Bytes returns the element serialized into a new slice.
func (e *Element) Bytes() []byte {
	var buf bytes.Buffer
	e.WriteTo(&buf)
	return buf.Bytes()
}

// String returns the element serialized; for logs and tests.
func (e *Element) String() string {
	var buf bytes.Buffer
	e.WriteTo(&buf)
	return buf.String()
}

// WriteElement serializes e to w through a pooled buffer.
func WriteElement(w io.Writer, e *Element) error {
	buf := GetBuffer()
	e.WriteTo(buf)
	_, err := w.Write(buf.Bytes())
	PutBuffer(buf)
	return err
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// GetBuffer returns an empty buffer from the shared pool.
func GetBuffer() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// PutBuffer returns a buffer to the pool. Very large buffers are dropped so
// that one huge stanza does not pin memory forever.
func PutBuffer(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return
	}
	bufPool.Put(b)
}

// EscapeText writes s with &, < and > escaped.
func EscapeText(buf *bytes.Buffer, s string) { escapeText(buf, s) }

func escapeText(buf *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		buf.WriteString(s[last:i])
		buf.WriteString(esc)
		last = i + 1
	}
	buf.WriteString(s[last:])
}

// EscapeAttr writes s escaped for a double-quoted attribute value.
func EscapeAttr(buf *bytes.Buffer, s string) { escapeAttr(buf, s) }

func escapeAttr(buf *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&quot;"
		case '\'':
			esc = "&apos;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		case '\t':
			esc = "&#x9;"
		default:
			continue
		}
		buf.WriteString(s[last:i])
		buf.WriteString(esc)
		last = i + 1
	}
	buf.WriteString(s[last:])
}
