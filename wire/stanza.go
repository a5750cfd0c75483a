package wire

// Namespaces used across the server.
const (
	NSClient     = "jabber:client"
	NSServer     = "jabber:server"
	NSDialback   = "jabber:server:dialback"
	NSStream     = "http://etherx.jabber.org/streams"
	NSStanzas    = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams    = "urn:ietf:params:xml:ns:xmpp-streams"
	NSTLS        = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL       = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind       = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSASL2      = "urn:xmpp:sasl:2"    // XEP-0388
	NSBind2      = "urn:xmpp:bind:0"    // XEP-0386
	NSFAST       = "urn:xmpp:fast:0"    // XEP-0484
	NSSASLCB     = "urn:xmpp:sasl-cb:0" // XEP-0440
	NSSession    = "urn:ietf:params:xml:ns:xmpp-session"
	NSFraming    = "urn:ietf:params:xml:ns:xmpp-framing"
	NSDelay      = "urn:xmpp:delay"
	NSRoster     = "jabber:iq:roster"
	NSRosterVer  = "urn:xmpp:features:rosterver" // XEP-0237 stream feature
	NSSM         = "urn:xmpp:sm:3"
	NSCarbons    = "urn:xmpp:carbons:2"
	NSCSI        = "urn:xmpp:csi:0" // XEP-0352
	NSForward    = "urn:xmpp:forward:0"
	NSPing       = "urn:xmpp:ping"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
)

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrorTypeAuth     = "auth"
	ErrorTypeCancel   = "cancel"
	ErrorTypeContinue = "continue"
	ErrorTypeModify   = "modify"
	ErrorTypeWait     = "wait"
)

// StanzaError is a Go error that carries an RFC 6120 stanza error. Handlers
// return it; the one place that answers a failed stanza turns it into XML.
type StanzaError struct {
	Type      string
	Condition string
	Text      string
	// App is an application-specific condition (RFC 6120 §8.3.4), such
	// as XEP-0060's <precondition-not-met xmlns='…pubsub#errors'/>,
	// which clients act on; nil when there is none. It is never changed
	// once set: WithApp makes a new error.
	App *Element
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return "stanza error " + e.Condition + ": " + e.Text
	}
	return "stanza error " + e.Condition
}

// WithText returns a copy with a human-readable text.
func (e *StanzaError) WithText(text string) *StanzaError {
	c := *e
	c.Text = text
	return &c
}

// WithApp returns a copy with an application-specific condition
// element (the copy keeps its own copy of app).
func (e *StanzaError) WithApp(app *Element) *StanzaError {
	c := *e
	c.App = app.Copy()
	return &c
}

// Element returns the <error/> child for this error: the defined
// condition, then the text, then the application-specific condition
// (RFC 6120 §8.3.2).
func (e *StanzaError) Element() *Element {
	errEl := New("error", "type", e.Type)
	errEl.Append(NewNS(e.Condition, NSStanzas))
	if e.Text != "" {
		errEl.Append(NewNS("text", NSStanzas).SetText(e.Text))
	}
	if e.App != nil {
		errEl.Append(e.App.Copy())
	}
	return errEl
}

// The stanza errors the server uses most, with their RFC 6120 types.
var (
	ErrBadRequest            = &StanzaError{Type: ErrorTypeModify, Condition: "bad-request"}
	ErrConflict              = &StanzaError{Type: ErrorTypeCancel, Condition: "conflict"}
	ErrFeatureNotImplemented = &StanzaError{Type: ErrorTypeCancel, Condition: "feature-not-implemented"}
	ErrForbidden             = &StanzaError{Type: ErrorTypeAuth, Condition: "forbidden"}
	ErrInternalServerError   = &StanzaError{Type: ErrorTypeCancel, Condition: "internal-server-error"}
	ErrItemNotFound          = &StanzaError{Type: ErrorTypeCancel, Condition: "item-not-found"}
	ErrJIDMalformed          = &StanzaError{Type: ErrorTypeModify, Condition: "jid-malformed"}
	ErrNotAcceptable         = &StanzaError{Type: ErrorTypeModify, Condition: "not-acceptable"}
	ErrNotAllowed            = &StanzaError{Type: ErrorTypeCancel, Condition: "not-allowed"}
	ErrNotAuthorized         = &StanzaError{Type: ErrorTypeAuth, Condition: "not-authorized"}
	ErrPolicyViolation       = &StanzaError{Type: ErrorTypeModify, Condition: "policy-violation"}
	ErrRecipientUnavailable  = &StanzaError{Type: ErrorTypeWait, Condition: "recipient-unavailable"}
	ErrRemoteServerNotFound  = &StanzaError{Type: ErrorTypeCancel, Condition: "remote-server-not-found"}
	ErrRemoteServerTimeout   = &StanzaError{Type: ErrorTypeWait, Condition: "remote-server-timeout"}
	ErrResourceConstraint    = &StanzaError{Type: ErrorTypeWait, Condition: "resource-constraint"}
	ErrServiceUnavailable    = &StanzaError{Type: ErrorTypeCancel, Condition: "service-unavailable"}
	ErrSubscriptionRequired  = &StanzaError{Type: ErrorTypeAuth, Condition: "subscription-required"}
	ErrUndefinedCondition    = &StanzaError{Type: ErrorTypeCancel, Condition: "undefined-condition"}
	ErrUnexpectedRequest     = &StanzaError{Type: ErrorTypeWait, Condition: "unexpected-request"}
)

// ErrorReply builds the error answer to a stanza: to and from swapped,
// type='error', the original payload kept (RFC 6120 §8.3.1 allows it and
// clients use it to match the failure to what they sent).
func ErrorReply(orig *Element, se *StanzaError) *Element {
	reply := &Element{Name: orig.Name}
	for _, a := range orig.Attrs {
		switch a.Name {
		case "to", "from", "type":
			continue
		}
		reply.Attrs = append(reply.Attrs, a)
	}
	reply.SetAttr("from", orig.To())
	reply.SetAttr("to", orig.From())
	reply.SetAttr("type", "error")
	for _, c := range orig.Children {
		if c.Name == "error" {
			continue
		}
		reply.Children = append(reply.Children, c)
	}
	reply.Children = append(reply.Children, se.Element())
	return reply
}

// IQResult builds the result answer to an IQ, with an optional payload.
func IQResult(iq *Element, payload *Element) *Element {
	reply := New("iq", "type", "result", "id", iq.ID())
	reply.SetAttr("from", iq.To())
	reply.SetAttr("to", iq.From())
	return reply.Append(payload)
}

// StreamError builds <stream:error/> with a condition (RFC 6120 §4.9.3).
func StreamError(condition, text string) *Element {
	e := New("stream:error")
	e.Append(NewNS(condition, NSStreams))
	if text != "" {
		e.Append(NewNS("text", NSStreams).SetText(text))
	}
	return e
}

// IsError reports whether a stanza is an error answer. The router never
// answers an error with an error (RFC 6120 §8.3.1).
func (e *Element) IsError() bool { return e.Attr("type") == "error" }
