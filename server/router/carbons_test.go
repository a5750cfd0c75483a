package router

import (
	"context"
	"errors"
	"testing"

	"github.com/aviary-im/aviary/wire"
)

func carbonOf(t *testing.T, el *wire.Element) (kind string, inner *wire.Element) {
	t.Helper()
	for _, c := range el.Children {
		if c.NS() == wire.NSCarbons && (c.Name == "sent" || c.Name == "received") {
			fwd := c.Child("forwarded", wire.NSForward)
			if fwd == nil {
				t.Fatalf("carbon without forwarded: %s", el)
			}
			m := fwd.Child("message", "")
			if m == nil || m.NS() != wire.NSClient {
				t.Fatalf("forwarded message without jabber:client: %s", el)
			}
			return c.Name, m
		}
	}
	return "", nil
}

func TestCarbons(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*env, *fakeSession, map[string]*fakeSession) {
		e := newEnv(t)
		e.user("juliet", "romeo")
		romeo := e.online("romeo", "o", 0)
		js := map[string]*fakeSession{
			"a": e.online("juliet", "a", 5),
			"b": e.online("juliet", "b", 1),
			"c": e.online("juliet", "c", 1),
		}
		for _, r := range []string{"a", "b"} {
			if err := e.r.SetCarbons(context.Background(), "juliet@example.com/"+r, true); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range js {
			s.take()
		}
		romeo.take()
		return e, romeo, js
	}
	type want struct{ a, b, c string } // "msg", "received", "sent" or ""
	cases := []struct {
		name   string
		fromJ  string // juliet's resource that sends, or "" for romeo
		stanza string
		want   want
	}{
		{"received to bare", "", `<message to='juliet@example.com' type='chat' id='x'><body>hi</body></message>`, want{"msg", "received", ""}},
		{"received to full of a non-carbons resource", "", `<message to='juliet@example.com/c' type='chat' id='x'><body>hi</body></message>`, want{"received", "received", "msg"}},
		{"received to full of a carbons resource", "", `<message to='juliet@example.com/b' type='chat' id='x'><body>hi</body></message>`, want{"received", "msg", ""}},
		{"sent", "a", `<message to='romeo@example.com' type='chat' id='x'><body>hi</body></message>`, want{"", "sent", ""}},
		{"sent from a non-carbons resource", "c", `<message to='romeo@example.com' type='chat' id='x'><body>hi</body></message>`, want{"sent", "sent", ""}},
		{"private", "", `<message to='juliet@example.com' type='chat' id='x'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>`, want{"msg", "", ""}},
		{"private sent", "a", `<message to='romeo@example.com' type='chat' id='x'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>`, want{"", "", ""}},
		{"no-copy", "", `<message to='juliet@example.com' type='chat' id='x'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`, want{"msg", "", ""}},
		{"normal with body is copied", "", `<message to='juliet@example.com' id='x'><body>hi</body></message>`, want{"msg", "received", ""}},
		{"normal without body is not copied", "", `<message to='juliet@example.com' id='x'><thread>t</thread></message>`, want{"msg", "", ""}},
		{"headline is not copied", "", `<message to='juliet@example.com' type='headline' id='x'><body>hi</body></message>`, want{"msg", "msg", "msg"}},
		{"gone full JID: bare rules, then carbons", "", `<message to='juliet@example.com/gone' type='chat' id='x'><body>hi</body></message>`, want{"msg", "received", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, romeo, js := setup(t)
			sender := romeo
			if tc.fromJ != "" {
				sender = js[tc.fromJ]
			}
			e.send(sender, tc.stanza)
			got := map[string]string{}
			for r, s := range js {
				for _, el := range s.take() {
					if el.Name != "message" {
						continue
					}
					kind, inner := carbonOf(t, el)
					if kind == "" {
						got[r] = "msg"
						continue
					}
					if el.From() != "juliet@example.com" || el.To() != "juliet@example.com/"+r || el.Type() != inner.Type() {
						t.Fatalf("carbon envelope %s", sig(el))
					}
					if inner.ID() != "x" || inner.ChildText("body", "") != "hi" || inner.From() == "" {
						t.Fatalf("carbon content %s", inner)
					}
					got[r] = kind
				}
			}
			if g := (want{got["a"], got["b"], got["c"]}); g != tc.want {
				t.Fatalf("got %+v, want %+v", g, tc.want)
			}
		})
	}
}

func TestSetCarbons(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	e.online("juliet", "a", 0)
	if err := e.r.SetCarbons(context.Background(), "juliet@example.com/nope", true); !errors.Is(err, ErrNoSession) {
		t.Fatalf("SetCarbons on a missing session: %v", err)
	}
	for _, on := range []bool{true, false} {
		if err := e.r.SetCarbons(context.Background(), "juliet@example.com/a", on); err != nil {
			t.Fatal(err)
		}
		res, err := e.r.Resources(context.Background(), "juliet@example.com")
		if err != nil || len(res) != 1 || res[0].Carbons != on || !res[0].Available || res[0].Node != "node1" {
			t.Fatalf("Resources = %+v, %v; want carbons %v", res, err, on)
		}
	}
}
