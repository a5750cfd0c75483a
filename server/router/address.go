package router

import (
	"strings"

	"mellium.im/xmpp/jid"
)

// addr is a parsed, normalized JID. For the common case (an ASCII JID
// already in canonical form) the strings are slices of the input: parsing
// a 'to' on the hot path allocates nothing.
type addr struct {
	local, domain, resource string
	bare, full              string
}

// parseAddr parses and normalizes a JID. It takes a fast path for JIDs
// whose localpart and domainpart are lowercase ASCII without characters
// that PRECIS would map or refuse, and falls back to mellium's full
// RFC 7622 preparation otherwise.
func parseAddr(s string) (addr, bool) {
	if s == "" {
		return addr{}, false
	}
	if a, ok := fastAddr(s); ok {
		return a, true
	}
	j, err := jid.Parse(s)
	if err != nil {
		return addr{}, false
	}
	a := addr{local: j.Localpart(), domain: j.Domainpart(), resource: j.Resourcepart()}
	a.bare = j.Bare().String()
	a.full = j.String()
	return a, true
}

func fastAddr(s string) (addr, bool) {
	slash := strings.IndexByte(s, '/')
	bare, res := s, ""
	if slash >= 0 {
		bare, res = s[:slash], s[slash+1:]
		if res == "" || len(res) > 1023 {
			return addr{}, false
		}
		for i := 0; i < len(res); i++ {
			if c := res[i]; c < 0x21 || c > 0x7e {
				return addr{}, false // spaces and non-ASCII: let PRECIS decide
			}
		}
	}
	at := strings.IndexByte(bare, '@')
	local, domain := "", bare
	if at >= 0 {
		local, domain = bare[:at], bare[at+1:]
		if local == "" || len(local) > 1023 || !plainPart(local, true) {
			return addr{}, false
		}
	}
	if domain == "" || len(domain) > 1023 || !plainPart(domain, false) || domain[len(domain)-1] == '.' {
		return addr{}, false
	}
	return addr{local: local, domain: domain, resource: res, bare: bare, full: s}, true
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

// bareOf returns the bare part of a JID string without normalizing.
func bareOf(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// normBare normalizes a JID string to its bare form ("" when invalid).
func normBare(s string) string {
	a, ok := parseAddr(s)
	if !ok {
		return ""
	}
	return a.bare
}
