// Package wire holds the XML element type that every part of Aviary passes
// around (c2s, the router, plugins, cluster links, s2s), the stream reader
// that enforces size and depth limits while it parses, and the serializer.
//
// It sits below every other package of ours and imports none of them: it is
// the one vocabulary the whole server shares. We keep our own small DOM rather
// than mellium's token streams because a router looks at a stanza several
// times (to, type, payload namespace) and forwards it whole; a tree parsed
// once is cheaper than replaying tokens.
package wire

import (
	"strings"
)

// Attr is one attribute. Name keeps its prefix as written ("xml:lang",
// "xmlns", "xmlns:stream"): the element is re-serialized as it arrived.
type Attr struct {
	Name  string
	Value string
}

// Element is one XML element. Mixed content keeps its order the way lxml
// does it: Text is the character data before the first child, and each
// child's Tail is the character data that follows that child.
type Element struct {
	Name     string
	Attrs    []Attr
	Children []*Element
	Text     string
	Tail     string
}

// New returns an element with the given name and attribute pairs
// (name, value, name, value...). An odd trailing name is ignored.
func New(name string, attrPairs ...string) *Element {
	e := &Element{Name: name}
	if len(attrPairs) > 0 {
		e.Attrs = make([]Attr, 0, len(attrPairs)/2)
		for i := 0; i+1 < len(attrPairs); i += 2 {
			e.Attrs = append(e.Attrs, Attr{Name: attrPairs[i], Value: attrPairs[i+1]})
		}
	}
	return e
}

// NewNS returns an element with a default namespace declaration.
func NewNS(name, ns string) *Element {
	return &Element{Name: name, Attrs: []Attr{{Name: "xmlns", Value: ns}}}
}

// Attr returns the value of the named attribute, or "" when it is absent.
func (e *Element) Attr(name string) string {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			return e.Attrs[i].Value
		}
	}
	return ""
}

// HasAttr reports whether the named attribute is present.
func (e *Element) HasAttr(name string) bool {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			return true
		}
	}
	return false
}

// SetAttr sets an attribute, replacing an existing one. An empty value
// removes it, because XMPP never distinguishes an empty to/from/id from a
// missing one.
func (e *Element) SetAttr(name, value string) *Element {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			if value == "" {
				e.Attrs = append(e.Attrs[:i], e.Attrs[i+1:]...)
			} else {
				e.Attrs[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attrs = append(e.Attrs, Attr{Name: name, Value: value})
	}
	return e
}

// RemoveAttr deletes an attribute if present.
func (e *Element) RemoveAttr(name string) *Element {
	return e.SetAttr(name, "")
}

// NS returns the element's own default namespace declaration ("" when it
// inherits one). Top-level stanzas usually inherit the stream's namespace.
func (e *Element) NS() string { return e.Attr("xmlns") }

// LocalName returns the name without a prefix.
func (e *Element) LocalName() string {
	if i := strings.IndexByte(e.Name, ':'); i >= 0 {
		return e.Name[i+1:]
	}
	return e.Name
}

// Child returns the first child with this name and namespace. An empty ns
// matches any namespace.
func (e *Element) Child(name, ns string) *Element {
	for _, c := range e.Children {
		if c.Name == name && (ns == "" || c.Attr("xmlns") == ns) {
			return c
		}
	}
	return nil
}

// ChildNS returns the first child in the namespace, whatever its name.
func (e *Element) ChildNS(ns string) *Element {
	for _, c := range e.Children {
		if c.Attr("xmlns") == ns {
			return c
		}
	}
	return nil
}

// ChildrenNamed returns every child with this name (any namespace when ns is "").
func (e *Element) ChildrenNamed(name, ns string) []*Element {
	var out []*Element
	for _, c := range e.Children {
		if c.Name == name && (ns == "" || c.Attr("xmlns") == ns) {
			out = append(out, c)
		}
	}
	return out
}

// ChildText returns the text of the first matching child, or "".
func (e *Element) ChildText(name, ns string) string {
	if c := e.Child(name, ns); c != nil {
		return c.AllText()
	}
	return ""
}

// FirstChild returns the first child element or nil; IQs carry exactly one.
func (e *Element) FirstChild() *Element {
	if len(e.Children) == 0 {
		return nil
	}
	return e.Children[0]
}

// AllText returns the element's character data, including its children's.
func (e *Element) AllText() string {
	if len(e.Children) == 0 {
		return e.Text
	}
	var b strings.Builder
	e.appendText(&b)
	return b.String()
}

func (e *Element) appendText(b *strings.Builder) {
	b.WriteString(e.Text)
	for _, c := range e.Children {
		c.appendText(b)
		b.WriteString(c.Tail)
	}
}

// Append adds children and returns e, so trees can be built in one expression.
func (e *Element) Append(children ...*Element) *Element {
	for _, c := range children {
		if c != nil {
			e.Children = append(e.Children, c)
		}
	}
	return e
}

// SetText replaces the element's character data (children are kept).
func (e *Element) SetText(s string) *Element {
	e.Text = s
	return e
}

// RemoveChildren deletes every child with this name and namespace.
func (e *Element) RemoveChildren(name, ns string) *Element {
	kept := e.Children[:0]
	for _, c := range e.Children {
		if c.Name == name && (ns == "" || c.Attr("xmlns") == ns) {
			continue
		}
		kept = append(kept, c)
	}
	for i := len(kept); i < len(e.Children); i++ {
		e.Children[i] = nil
	}
	e.Children = kept
	return e
}

// Copy returns a deep copy. Routing to several resources copies before it
// stamps per-recipient attributes.
func (e *Element) Copy() *Element {
	if e == nil {
		return nil
	}
	c := &Element{Name: e.Name, Text: e.Text, Tail: e.Tail}
	if len(e.Attrs) > 0 {
		c.Attrs = make([]Attr, len(e.Attrs))
		copy(c.Attrs, e.Attrs)
	}
	if len(e.Children) > 0 {
		c.Children = make([]*Element, len(e.Children))
		for i, ch := range e.Children {
			c.Children[i] = ch.Copy()
		}
	}
	return c
}

// Stanza accessors. They are plain attribute reads, named for readability.

// To returns the "to" attribute.
func (e *Element) To() string { return e.Attr("to") }

// From returns the "from" attribute.
func (e *Element) From() string { return e.Attr("from") }

// ID returns the "id" attribute.
func (e *Element) ID() string { return e.Attr("id") }

// Type returns the "type" attribute.
func (e *Element) Type() string { return e.Attr("type") }

// IsStanza reports whether the element is a message, presence or iq.
func (e *Element) IsStanza() bool {
	switch e.Name {
	case "message", "presence", "iq":
		return true
	}
	return false
}
