package wire

import "errors"

// Errors the reader returns. Each maps to one RFC 6120 stream error
// condition; StreamErrorFor does the mapping in one place.
var (
	// ErrStreamEnd means the peer sent its closing stream tag.
	ErrStreamEnd = errors.New("wire: stream closed by peer")
	// ErrStanzaTooLarge means a top-level element passed Limits.MaxStanzaBytes.
	ErrStanzaTooLarge = errors.New("wire: stanza too large")
	// ErrTooDeep means elements nested past Limits.MaxDepth.
	ErrTooDeep = errors.New("wire: elements nested too deeply")
	// ErrNotWellFormed means the XML is broken (mismatched tags, bad syntax).
	ErrNotWellFormed = errors.New("wire: xml not well-formed")
	// ErrRestrictedXML means a comment, processing instruction or DTD.
	ErrRestrictedXML = errors.New("wire: restricted xml")
	// ErrBadFormat means text where only elements may stand, or a stream
	// header that is not a <stream/> element.
	ErrBadFormat = errors.New("wire: bad format")
	// ErrInvalidNamespace means a stream header outside the streams
	// namespace, or a top-level element in no namespace (xmlns='').
	ErrInvalidNamespace = errors.New("wire: invalid namespace")
	// ErrBadNamespacePrefix means an element name with an undeclared
	// prefix (or the reserved xml or xmlns prefix).
	ErrBadNamespacePrefix = errors.New("wire: bad namespace prefix")
)

// StreamErrorFor returns the RFC 6120 stream error condition for a reader
// error, or "" when the error is a transport failure that needs no answer.
func StreamErrorFor(err error) string {
	switch {
	case errors.Is(err, ErrStanzaTooLarge), errors.Is(err, ErrTooDeep):
		return "policy-violation"
	case errors.Is(err, ErrRestrictedXML):
		return "restricted-xml"
	case errors.Is(err, ErrNotWellFormed):
		return "not-well-formed"
	case errors.Is(err, ErrBadFormat):
		return "bad-format"
	case errors.Is(err, ErrInvalidNamespace):
		return "invalid-namespace"
	case errors.Is(err, ErrBadNamespacePrefix):
		return "bad-namespace-prefix"
	}
	return ""
}
