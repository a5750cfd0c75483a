package vcard_test

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/vcard"
	"github.com/aviary-im/aviary/storage"
)

func TestVCard(t *testing.T) {
	h := plugintest.NewHost(t)
	for _, u := range []string{"juliet", "romeo"} {
		if err := h.St.CreateUser(context.Background(), storage.User{Username: u}); err != nil {
			t.Fatal(err)
		}
	}
	m := h.Start(t, vcard.New())
	notFound := `<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`
	cases := []struct {
		name   string
		target plugins.Target
		in     string
		want   string
	}{
		{"own, none stored", plugins.ToServer,
			`<iq type='get' id='v1' from='juliet@example.com/b'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq id="v1" to="juliet@example.com/b" type="error"><vCard xmlns="vcard-temp"/>` + notFound + `</iq>`},
		{"set own", plugins.ToServer,
			`<iq type='set' id='v2' from='juliet@example.com/b'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`,
			`<iq type="result" id="v2" to="juliet@example.com/b"/>`},
		{"get own", plugins.ToServer,
			`<iq type='get' id='v3' from='juliet@example.com/b'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v3" to="juliet@example.com/b"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`},
		{"get own by bare JID", plugins.ToAccount,
			`<iq type='get' id='v4' from='juliet@example.com/b' to='juliet@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v4" from="juliet@example.com" to="juliet@example.com/b"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`},
		{"get other's", plugins.ToAccount,
			`<iq type='get' id='v5' from='romeo@example.com/a' to='juliet@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v5" from="juliet@example.com" to="romeo@example.com/a"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`},
		{"remote requester", plugins.ToAccount,
			`<iq type='get' id='v6' from='mercutio@other.org/x' to='juliet@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v6" from="juliet@example.com" to="mercutio@other.org/x"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`},
		{"other's, none stored", plugins.ToAccount,
			`<iq type='get' id='v7' from='juliet@example.com/b' to='romeo@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq id="v7" from="romeo@example.com" to="juliet@example.com/b" type="error"><vCard xmlns="vcard-temp"/>` + notFound + `</iq>`},
		{"no such account", plugins.ToAccount,
			`<iq type='get' id='v8' from='juliet@example.com/b' to='nobody@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq id="v8" from="nobody@example.com" to="juliet@example.com/b" type="error"><vCard xmlns="vcard-temp"/><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"set other's", plugins.ToAccount,
			`<iq type='set' id='v9' from='romeo@example.com/a' to='juliet@example.com'><vCard xmlns='vcard-temp'><FN>Hacked</FN></vCard></iq>`,
			`<iq id="v9" from="juliet@example.com" to="romeo@example.com/a" type="error"><vCard xmlns="vcard-temp"><FN>Hacked</FN></vCard><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"still unchanged", plugins.ToAccount,
			`<iq type='get' id='v10' from='romeo@example.com/a' to='juliet@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v10" from="juliet@example.com" to="romeo@example.com/a"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>`},
		{"server vcard", plugins.ToServer,
			`<iq type='get' id='v11' from='romeo@example.com/a' to='example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq id="v11" from="example.com" to="romeo@example.com/a" type="error"><vCard xmlns="vcard-temp"/>` + notFound + `</iq>`},
		{"set own by bare JID", plugins.ToAccount,
			`<iq type='set' id='v12' from='romeo@example.com/a' to='romeo@example.com'><vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard></iq>`,
			`<iq type="result" id="v12" from="romeo@example.com" to="romeo@example.com/a"/>`},
		{"read back", plugins.ToAccount,
			`<iq type='get' id='v13' from='juliet@example.com/b' to='romeo@example.com'><vCard xmlns='vcard-temp'/></iq>`,
			`<iq type="result" id="v13" from="romeo@example.com" to="juliet@example.com/b"><vCard xmlns="vcard-temp"><FN>Romeo</FN></vCard></iq>`},
	}
	for _, c := range cases { // sequential: later cases see earlier sets
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
}
