package xmpputil_test

import (
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/wire"
)

func TestSelfAndTarget(t *testing.T) {
	cases := []struct {
		name, from, to string
		local          bool
		self           bool
		target         string
	}{
		{"no to", "Juliet@Example.com/b", "", true, true, "juliet@example.com"},
		{"own bare", "juliet@example.com/b", "JULIET@example.com", true, true, "juliet@example.com"},
		{"own full", "juliet@example.com/b", "juliet@example.com/c", true, true, "juliet@example.com"},
		{"other user", "juliet@example.com/b", "romeo@example.com", true, false, "romeo@example.com"},
		{"domain", "juliet@example.com/b", "example.com", true, false, "example.com"},
		{"remote sender, no to", "juliet@other.org/b", "", false, false, "juliet@other.org"},
		{"bad from", "@", "", true, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			el := wire.New("iq", "type", "get", "from", c.from)
			el.SetAttr("to", c.to)
			iq := &plugins.IQ{Stanza: el, From: c.from, FromLocal: c.local}
			if _, got := xmpputil.Self(iq); got != c.self {
				t.Errorf("Self = %v; want %v", got, c.self)
			}
			if got := xmpputil.Target(iq); got != c.target {
				t.Errorf("Target = %q; want %q", got, c.target)
			}
		})
	}
}
