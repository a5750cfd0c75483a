package servertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/wire"
)

// The offline flood of issue 16: about 17 offline messages of 250 KiB
// (more than the 4 MiB a session may queue for its client) made every
// later login of the victim end with policy-violation before a single
// message went out, and put everything back in storage: the account was
// locked out for the 30 days the messages are kept. Tests of every
// transport replay it with FloodOffline and check the login with
// ReadFlood.
const (
	FloodMessages = 17
	FloodBody     = 250 << 10
)

// FloodOffline has from send the flood to the offline user's bare JID,
// ids flood0…, and waits until all of it is stored.
func FloodOffline(t testing.TB, n *server.Node, from *Client, to string) {
	t.Helper()
	body := strings.Repeat("x", FloodBody)
	for i := range FloodMessages {
		from.Send("<message to='%s' type='chat' id='flood%d'><body>%s</body></message>", to, i, body)
	}
	CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		cnt, err := n.Store().CountOffline(context.Background(), to)
		if err != nil || cnt != FloodMessages {
			return fmt.Errorf("stored %d of %d (%v)", cnt, FloodMessages, err)
		}
		return nil
	})
}

// ReadFlood reads what the victim's session brings, with next, until want
// flood messages have arrived; it fails on a stream error or the end of
// the stream, and on a message without its body or the XEP-0203 stamp.
// It returns the ids in the order they came.
func ReadFlood(t testing.TB, next func() (*wire.Element, error), want int) []string {
	t.Helper()
	var ids []string
	for len(ids) < want {
		el, err := next()
		if err != nil {
			t.Fatalf("after %d of %d offline messages the stream ended: %v", len(ids), want, err)
		}
		switch {
		case el.Name == "stream:error":
			t.Fatalf("after %d of %d offline messages the login ended with %s", len(ids), want, el)
		case el.Name == "message" && strings.HasPrefix(el.ID(), "flood"):
			if n := len(el.ChildText("body", "")); n != FloodBody {
				t.Fatalf("message %s has a body of %d bytes", el.ID(), n)
			}
			if d := el.Child("delay", wire.NSDelay); d == nil || d.Attr("from") == "" {
				t.Fatalf("offline message %s without a delay stamp", el.ID())
			}
			ids = append(ids, el.ID())
		}
	}
	return ids
}

// FloodInOrder fails unless ids are flood0, flood1, … in order.
func FloodInOrder(t testing.TB, ids []string) {
	t.Helper()
	for i, id := range ids {
		if id != fmt.Sprintf("flood%d", i) {
			t.Fatalf("offline messages out of order: %v", ids)
		}
	}
}
