package component_test

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins/component"
)

// TestHandshake checks the digest against one computed independently:
// printf '%s' '3BF96D32secret' | sha1sum.
func TestHandshake(t *testing.T) {
	const want = "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
	if got := component.Digest("3BF96D32", "secret"); got != want {
		t.Errorf("digest %s, want %s", got, want)
	}
	for _, c := range []struct {
		digest string
		ok     bool
	}{{want, true}, {strings.ToUpper(want), true}, {" " + want + "\n", true}, {"ABCDEF" + want[6:], false}, {want[:39], false}, {"", false}} {
		if got := component.Handshake("3BF96D32", "secret", c.digest); got != c.ok {
			t.Errorf("Handshake(%q) = %v", c.digest, got)
		}
	}
}
