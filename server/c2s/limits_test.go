package c2s_test

import (
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestRegistrationRateLimit: one address registered 904 accounts a
// second in-band; past c2s.registration_limit it gets resource-constraint
// with a text, on the same stream, and nothing is created. A user of the
// same address still logs in.
func TestRegistrationRateLimit(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.AllowRegistration = true
	cfg.C2S.RegistrationLimit = 3
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "carol", "carolpw")
	c := servertest.DialTLS(t, n)
	for i := 1; i <= 4; i++ {
		c.Send("<iq type='set' id='reg%d'><query xmlns='jabber:iq:register'><username>bot%d</username><password>pw</password></query></iq>", i, i)
		r := c.Expect("registration answer", func(el *wire.Element) bool { return el.ID() == fmt.Sprintf("reg%d", i) })
		if i <= 3 {
			if r.Type() != "result" {
				t.Fatalf("registration %d: %s", i, r)
			}
			continue
		}
		e := r.Child("error", "")
		if r.Type() != "error" || e == nil || e.Type() != "wait" || e.Child("resource-constraint", wire.NSStanzas) == nil || e.ChildText("text", wire.NSStanzas) == "" {
			t.Fatalf("registration past the limit: %s", r)
		}
	}
	if _, err := n.Store().GetUser(t.Context(), "bot4"); err == nil {
		t.Error("bot4 was created past the limit")
	}
	checkCanary(t, canary(t, n))
}
