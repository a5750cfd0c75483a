package wire

import (
	"errors"
	"strings"

	"mellium.im/xmpp/jid"
)

// ErrJID means a string is not a valid JID (RFC 7622).
var ErrJID = errors.New("wire: not a valid JID")

// JID is a parsed, normalized JID (RFC 7622): the one JID type of the
// server. Parsing applies PRECIS through mellium's jid package, except on
// the fast path: a JID whose localpart and domainpart are already
// canonical (lowercase ASCII without characters PRECIS would map or
// refuse) is taken as it is, its parts slices of the input, so parsing a
// 'to' on the router's hot path allocates nothing.
//
// Where a JID crosses an API as a string (the plugin Host API, storage,
// the cluster's route keys), the string is JID.String() or JID.Bare():
// normalized, so strings compare as JIDs do.
type JID struct {
	local, domain, resource string
	bare, full              string
}

// ParseJID parses and normalizes s; an invalid JID gives ErrJID.
func ParseJID(s string) (JID, error) {
	if s == "" {
		return JID{}, ErrJID
	}
	if j, ok := fastJID(s); ok {
		return j, nil
	}
	p, err := jid.Parse(s)
	if err != nil {
		return JID{}, ErrJID
	}
	return fromMellium(p), nil
}

// NewJID builds a JID from its parts, applying PRECIS to each (mellium's
// jid.New); an invalid part gives ErrJID.
func NewJID(local, domain, resource string) (JID, error) {
	p, err := jid.New(local, domain, resource)
	if err != nil {
		return JID{}, ErrJID
	}
	return fromMellium(p), nil
}

func fromMellium(p jid.JID) JID {
	return JID{local: p.Localpart(), domain: p.Domainpart(), resource: p.Resourcepart(), bare: p.Bare().String(), full: p.String()}
}

// Local is the localpart ("" for a server or service).
func (j JID) Local() string { return j.local }

// Domain is the domainpart.
func (j JID) Domain() string { return j.domain }

// Resource is the resourcepart ("" for a bare JID).
func (j JID) Resource() string { return j.resource }

// Bare is the JID without its resource: local@domain or domain.
func (j JID) Bare() string { return j.bare }

// String is the whole normalized JID.
func (j JID) String() string { return j.full }

// IsZero reports whether j is the zero JID (what a failed parse returns).
func (j JID) IsZero() bool { return j.full == "" }

// BareJID returns the bare part of a JID string that is already
// normalized (a JID the server stamped or stored): everything before the
// first '/'. It does not parse; for a JID from outside, use ParseJID.
func BareJID(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

func fastJID(s string) (JID, bool) {
	slash := strings.IndexByte(s, '/')
	bare, res := s, ""
	if slash >= 0 {
		bare, res = s[:slash], s[slash+1:]
		if res == "" || len(res) > 1023 {
			return JID{}, false
		}
		for i := 0; i < len(res); i++ {
			if c := res[i]; c < 0x21 || c > 0x7e {
				return JID{}, false // spaces and non-ASCII: let PRECIS decide
			}
		}
	}
	at := strings.IndexByte(bare, '@')
	local, domain := "", bare
	if at >= 0 {
		local, domain = bare[:at], bare[at+1:]
		if local == "" || len(local) > 1023 || !plainPart(local, true) {
			return JID{}, false
		}
	}
	if domain == "" || len(domain) > 1023 || !plainPart(domain, false) || domain[len(domain)-1] == '.' {
		return JID{}, false
	}
	return JID{local: local, domain: domain, resource: res, bare: bare, full: s}, true
}

// plainPart reports whether s is already canonical: lowercase ASCII
// letters, digits and a few punctuation characters.
func plainPart(s string, local bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		case local && (c == '+' || c == '=' || c == '!' || c == '#' || c == '$' || c == '%' || c == '*' || c == '^' || c == '{' || c == '}' || c == '|' || c == '~' || c == '?' || c == ','):
		default:
			return false
		}
	}
	return true
}

// JIDOf is ParseJID for callers that treat an invalid JID like an absent
// one: it returns the zero JID, whose parts are all "".
func JIDOf(s string) JID {
	j, _ := ParseJID(s)
	return j
}
