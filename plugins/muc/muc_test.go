package muc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

const svc = "conference.example.com"

// fixture drives one node's group chat through its service handler, as
// the router would, and reads what the rooms send.
type fixture struct {
	t   *testing.T
	h   *plugintest.Host
	m   *plugins.Manager
	seq atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	h := plugintest.NewHost(t)
	return &fixture{t: t, h: h, m: h.Start(t, muc.New())}
}

// do hands the stanzas to the service and returns what the room(s) sent
// until then: a ping to the room from a marker address is answered after
// everything queued before it for that room.
func (f *fixture) do(room string, xml ...string) []string {
	f.t.Helper()
	for _, x := range xml {
		el := plugintest.Parse(f.t, x)
		svcH, ok := f.m.Service(svc)
		if !ok {
			f.t.Fatal("no conference service")
		}
		if err := svcH.Handle(context.Background(), el); err != nil {
			se, ok := err.(*wire.StanzaError)
			if !ok {
				f.t.Fatalf("service: %v", err)
			}
			f.h.Route(context.Background(), wire.ErrorReply(el, se))
		}
	}
	id := fmt.Sprintf("sync%d", f.seq.Add(1))
	ping := fmt.Sprintf(`<iq type='get' id='%s' from='sync@example.com/x' to='%s@%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id, room, svc)
	svcH, _ := f.m.Service(svc)
	_ = svcH.Handle(context.Background(), plugintest.Parse(f.t, ping))
	out, _ := f.await(id)
	return out
}

// await returns what was routed before the stanza with that id, and it.
func (f *fixture) await(id string) ([]string, string) {
	f.t.Helper()
	var out []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range f.h.Routed() {
			if strings.Contains(s, "id=\""+id+"\"") {
				return out, s
			}
			out = append(out, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("no stanza with id %s; got %q", id, out)
	return nil, ""
}

// find returns the stanzas containing every one of the parts.
func find(got []string, parts ...string) []string {
	var out []string
next:
	for _, s := range got {
		for _, p := range parts {
			if !strings.Contains(s, p) {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

func mustFind(t *testing.T, got []string, parts ...string) string {
	t.Helper()
	f := find(got, parts...)
	if len(f) != 1 {
		t.Fatalf("want one stanza with %q, got %d in:\n%s", parts, len(f), strings.Join(got, "\n"))
	}
	return f[0]
}

func join(room, from, nick string, extra ...string) string {
	return fmt.Sprintf(`<presence from='%s' to='%s@%s/%s'><x xmlns='http://jabber.org/protocol/muc'>%s</x></presence>`, from, room, svc, nick, strings.Join(extra, ""))
}

// instant creates a room owned by alice and unlocks it (§10.1.2).
func (f *fixture) instant(room string) {
	f.t.Helper()
	f.do(room, join(room, "alice@example.com/a", "alice"),
		fmt.Sprintf(`<iq type='set' id='cfg' from='alice@example.com/a' to='%s@%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room, svc))
}

func TestJoinCreatesLockedRoomThenInstant(t *testing.T) {
	f := newFixture(t)
	got := f.do("r1", join("r1", "alice@example.com/a", "alice"))
	self := mustFind(t, got, `from="r1@conference.example.com/alice"`, `to="alice@example.com/a"`, `code="110"`)
	for _, want := range []string{`code="201"`, `affiliation="owner"`, `role="moderator"`, `urn:xmpp:occupant-id:0`} {
		if !strings.Contains(self, want) {
			t.Errorf("self-presence lacks %s: %s", want, self)
		}
	}
	mustFind(t, got, `<subject/>`)
	// Locked: nobody else enters until the owner configures it.
	got = f.do("r1", join("r1", "bob@example.com/b", "bob"))
	mustFind(t, got, `type="error"`, `item-not-found`, `to="bob@example.com/b"`)
	got = f.do("r1", `<iq type='set' id='cfg' from='alice@example.com/a' to='r1@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	mustFind(t, got, `id="cfg"`, `type="result"`)
	got = f.do("r1", join("r1", "bob@example.com/b", "bob"))
	mustFind(t, got, `from="r1@conference.example.com/alice"`, `to="bob@example.com/b"`)
	bobSelf := mustFind(t, got, `from="r1@conference.example.com/bob"`, `to="bob@example.com/b"`, `code="110"`)
	if strings.Contains(bobSelf, `code="201"`) {
		t.Errorf("201 for a joiner who did not create the room: %s", bobSelf)
	}
	toAlice := mustFind(t, got, `from="r1@conference.example.com/bob"`, `to="alice@example.com/a"`)
	if !strings.Contains(toAlice, `jid="bob@example.com/b"`) {
		t.Errorf("a moderator sees real JIDs in a semi-anonymous room: %s", toAlice)
	}
	// Nickname conflict (§7.2.9).
	got = f.do("r1", join("r1", "carol@example.com/c", "bob"))
	mustFind(t, got, `type="error"`, `<conflict`, `to="carol@example.com/c"`)
}

func TestMessagesSubjectHistoryAndPrivate(t *testing.T) {
	f := newFixture(t)
	f.instant("r2")
	f.do("r2", join("r2", "bob@example.com/b", "bob"))
	got := f.do("r2", `<message type='groupchat' id='m1' from='bob@example.com/b' to='r2@conference.example.com'><body>hello</body></message>`)
	if n := len(find(got, `from="r2@conference.example.com/bob"`, `<body>hello</body>`, `id="m1"`)); n != 2 {
		t.Fatalf("want the message reflected to both occupants, got %d in %q", n, got)
	}
	// Not an occupant: not-acceptable.
	got = f.do("r2", `<message type='groupchat' id='m2' from='eve@example.com/e' to='r2@conference.example.com'><body>x</body></message>`)
	mustFind(t, got, `not-acceptable`, `to="eve@example.com/e"`)
	// Subject: participants may not change it by default.
	got = f.do("r2", `<message type='groupchat' from='bob@example.com/b' to='r2@conference.example.com'><subject>bob's</subject></message>`)
	mustFind(t, got, `forbidden`, `to="bob@example.com/b"`)
	got = f.do("r2", `<message type='groupchat' from='alice@example.com/a' to='r2@conference.example.com'><subject>Topic</subject></message>`)
	if n := len(find(got, `<subject>Topic</subject>`)); n != 2 {
		t.Fatalf("subject to both: %q", got)
	}
	f.do("r2", `<message type='groupchat' id='m3' from='alice@example.com/a' to='r2@conference.example.com'><body>second</body></message>`)
	// History: the last one only, with a delay; then the subject.
	got = f.do("r2", join("r2", "carol@example.com/c", "carol", `<history maxstanzas='1'/>`))
	var carol []string
	for _, s := range got {
		if strings.Contains(s, `to="carol@example.com/c"`) && strings.HasPrefix(s, "<message") {
			carol = append(carol, s)
		}
	}
	if len(carol) != 2 || !strings.Contains(carol[0], "second") || !strings.Contains(carol[0], "urn:xmpp:delay") || !strings.Contains(carol[1], "<subject>Topic</subject>") {
		t.Fatalf("history then subject, got %q", carol)
	}
	got = f.do("r2", join("r2", "dave@example.com/d", "dave", `<history maxchars='0'/>`))
	if n := len(find(got, `to="dave@example.com/d"`, `urn:xmpp:delay`)); n != 0 {
		t.Fatalf("maxchars=0 sends no history: %q", got)
	}
	got = f.do("r2", join("r2", "erin@example.com/e", "erin", `<history since='2999-01-01T00:00:00Z'/>`))
	if n := len(find(got, `to="erin@example.com/e"`, `urn:xmpp:delay`)); n != 0 {
		t.Fatalf("since in the future sends no history: %q", got)
	}
	// A private message goes to the occupant's sessions, from the sender's room JID.
	got = f.do("r2", `<message type='chat' id='pm' from='bob@example.com/b' to='r2@conference.example.com/alice'><body>psst</body></message>`)
	mustFind(t, got, `from="r2@conference.example.com/bob"`, `to="alice@example.com/a"`, `psst`, `http://jabber.org/protocol/muc#user`)
	got = f.do("r2", `<message type='chat' from='bob@example.com/b' to='r2@conference.example.com/nobody'><body>x</body></message>`)
	mustFind(t, got, `item-not-found`, `to="bob@example.com/b"`)
	// A nickname change (§7.6): unavailable with 303 and the new nick,
	// then available from the new nick; the occupant id stays.
	got = f.do("r2", `<presence from='bob@example.com/b' to='r2@conference.example.com/robert'/>`)
	old := mustFind(t, got, `type="unavailable"`, `from="r2@conference.example.com/bob"`, `to="alice@example.com/a"`, `code="303"`, `nick="robert"`)
	now := mustFind(t, got, `from="r2@conference.example.com/robert"`, `to="alice@example.com/a"`)
	mustFind(t, got, `type="unavailable"`, `to="bob@example.com/b"`, `code="303"`, `code="110"`)
	id := func(s string) string {
		_, after, _ := strings.Cut(s, `urn:xmpp:occupant-id:0" id="`)
		v, _, _ := strings.Cut(after, `"`)
		return v
	}
	if id(old) == "" || id(old) != id(now) {
		t.Errorf("occupant id changed with the nick: %q, %q", id(old), id(now))
	}
	got = f.do("r2", `<presence from='carol@example.com/c' to='r2@conference.example.com/alice'/>`)
	mustFind(t, got, `conflict`, `to="carol@example.com/c"`)
}

func TestKickBanAndAffiliations(t *testing.T) {
	f := newFixture(t)
	f.instant("r3")
	f.do("r3", join("r3", "bob@example.com/b", "bob"), join("r3", "carol@example.com/c", "carol"))
	// A participant may not kick.
	got := f.do("r3", `<iq type='set' id='k0' from='bob@example.com/b' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='carol' role='none'/></query></iq>`)
	mustFind(t, got, `id="k0"`, `forbidden`)
	got = f.do("r3", `<iq type='set' id='k1' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'><reason>spam</reason></item></query></iq>`)
	mustFind(t, got, `id="k1"`, `type="result"`)
	kicked := mustFind(t, got, `type="unavailable"`, `to="bob@example.com/b"`, `code="307"`, `code="110"`)
	if !strings.Contains(kicked, "spam") || !strings.Contains(kicked, `<actor nick="alice"`) {
		t.Errorf("kick presence lacks reason or actor: %s", kicked)
	}
	mustFind(t, got, `type="unavailable"`, `to="carol@example.com/c"`, `code="307"`)
	// An owner cannot be kicked.
	got = f.do("r3", `<iq type='set' id='k2' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='alice' role='none'/></query></iq>`)
	mustFind(t, got, `id="k2"`, `not-allowed`)
	// Ban carol: she leaves with 301 and cannot come back.
	got = f.do("r3", `<iq type='set' id='b1' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='carol@example.com' affiliation='outcast'/></query></iq>`)
	mustFind(t, got, `type="unavailable"`, `to="carol@example.com/c"`, `code="301"`)
	got = f.do("r3", join("r3", "carol@example.com/c2", "carol"))
	mustFind(t, got, `forbidden`, `to="carol@example.com/c2"`)
	got = f.do("r3", `<iq type='get' id='l1' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query></iq>`)
	mustFind(t, got, `id="l1"`, `jid="carol@example.com"`, `affiliation="outcast"`)
	// The last owner stays.
	got = f.do("r3", `<iq type='set' id='o1' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='alice@example.com' affiliation='member'/></query></iq>`)
	mustFind(t, got, `id="o1"`, `conflict`)
	// Voice: a moderated room makes newcomers visitors; a moderator grants voice.
	f.do("r3", `<iq type='set' id='cfg2' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>`)
	got = f.do("r3", join("r3", "dave@example.com/d", "dave"))
	mustFind(t, got, `to="dave@example.com/d"`, `code="110"`, `role="visitor"`)
	got = f.do("r3", `<message type='groupchat' from='dave@example.com/d' to='r3@conference.example.com'><body>hi</body></message>`)
	mustFind(t, got, `forbidden`, `to="dave@example.com/d"`)
	got = f.do("r3", `<iq type='set' id='v1' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='dave' role='participant'/></query></iq>`)
	mustFind(t, got, `to="dave@example.com/d"`, `role="participant"`, `code="110"`)
	// A voice request (§7.13) reaches the moderators; one approves it (§8.6).
	f.do("r3", `<iq type='set' id='cfg3' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_voicerequests'><value>1</value></field></x></query></iq>`)
	f.do("r3", join("r3", "erin@example.com/e", "erin"))
	req := `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field></x>`
	got = f.do("r3", `<message from='erin@example.com/e' to='r3@conference.example.com'>`+req+`</message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `muc#request`, `<value>erin</value>`)
	approve := `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#roomnick'><value>erin</value></field><field var='muc#request_allow'><value>true</value></field></x>`
	got = f.do("r3", `<message from='alice@example.com/a' to='r3@conference.example.com'>`+approve+`</message>`)
	mustFind(t, got, `to="erin@example.com/e"`, `role="participant"`, `code="110"`)
	// Members-only from now on: erin and dave, not members, leave with 322.
	got = f.do("r3", `<iq type='set' id='cfg4' from='alice@example.com/a' to='r3@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>`)
	mustFind(t, got, `type="unavailable"`, `to="erin@example.com/e"`, `code="322"`, `code="110"`)
	mustFind(t, got, `type="unavailable"`, `from="r3@conference.example.com/dave"`, `to="alice@example.com/a"`, `code="322"`)
}

func TestMembersOnlyPasswordInviteDestroy(t *testing.T) {
	f := newFixture(t)
	f.do("r4", join("r4", "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='r4@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>
<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
<field var='muc#roomconfig_membersonly'><value>1</value></field>
<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>
<field var='muc#roomconfig_roomsecret'><value>s3cret</value></field>
<field var='muc#roomconfig_whois'><value>anyone</value></field>
</x></query></iq>`)
	got := f.do("r4", join("r4", "bob@example.com/b", "bob"))
	mustFind(t, got, `registration-required`, `to="bob@example.com/b"`)
	// The owner invites bob: he becomes a member and gets the password.
	got = f.do("r4", `<message from='alice@example.com/a' to='r4@conference.example.com'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@example.com'><reason>come</reason></invite></x></message>`)
	inv := mustFind(t, got, `to="bob@example.com"`, `<invite from="alice@example.com/a"`)
	if !strings.Contains(inv, "s3cret") || !strings.Contains(inv, "come") {
		t.Errorf("invitation lacks password or reason: %s", inv)
	}
	got = f.do("r4", join("r4", "bob@example.com/b", "bob"))
	mustFind(t, got, `not-authorized`, `to="bob@example.com/b"`)
	got = f.do("r4", join("r4", "bob@example.com/b", "bob", `<password>s3cret</password>`))
	self := mustFind(t, got, `to="bob@example.com/b"`, `code="110"`)
	if !strings.Contains(self, `code="100"`) || !strings.Contains(self, `affiliation="member"`) {
		t.Errorf("non-anonymous room's self-presence: %s", self)
	}
	// A decline goes back to the inviter.
	got = f.do("r4", `<message from='carol@example.com/c' to='r4@conference.example.com'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='alice@example.com/a'><reason>busy</reason></decline></x></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `<decline from="carol@example.com"`, `busy`)
	// Destroy with an alternate venue.
	got = f.do("r4", `<iq type='set' id='d1' from='alice@example.com/a' to='r4@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='other@conference.example.com'><reason>moved</reason></destroy></query></iq>`)
	mustFind(t, got, `id="d1"`, `type="result"`)
	mustFind(t, got, `to="bob@example.com/b"`, `<destroy jid="other@conference.example.com"`, `moved`)
	got = f.do("r4", `<iq type='get' id='i1' from='bob@example.com/b' to='r4@conference.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	mustFind(t, got, `id="i1"`, `item-not-found`)
}

func TestSelfPingDiscoAndLeave(t *testing.T) {
	f := newFixture(t)
	f.instant("r5")
	got := f.do("r5", `<iq type='get' id='p1' from='alice@example.com/a' to='r5@conference.example.com/alice'><ping xmlns='urn:xmpp:ping'/></iq>`)
	mustFind(t, got, `id="p1"`, `type="result"`)
	got = f.do("r5", `<iq type='get' id='p2' from='bob@example.com/b' to='r5@conference.example.com/alice'><ping xmlns='urn:xmpp:ping'/></iq>`)
	mustFind(t, got, `id="p2"`, `not-acceptable`)
	got = f.do("r5", `<iq type='get' id='i1' from='bob@example.com/b' to='r5@conference.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := mustFind(t, got, `id="i1"`, `type="result"`)
	for _, want := range []string{`category="conference"`, `var="http://jabber.org/protocol/muc"`, `muc_temporary`, `muc_open`, `http://jabber.org/protocol/muc#roominfo`, `muc#roominfo_occupants`, `urn:xmpp:occupant-id:0`} {
		if !strings.Contains(info, want) {
			t.Errorf("room disco#info lacks %s: %s", want, info)
		}
	}
	// The service lists the public room.
	svcH, _ := f.m.Service(svc)
	_ = svcH.Handle(context.Background(), plugintest.Parse(t, `<iq type='get' id='it' from='bob@example.com/b' to='conference.example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`))
	_, items := f.await("it")
	if !strings.Contains(items, `jid="r5@conference.example.com"`) {
		t.Errorf("service disco#items lacks the room: %s", items)
	}
	// IQs between occupants are forwarded from the sender's room JID and
	// their answers come back (vCards go to the account).
	f.do("r5", join("r5", "bob@example.com/b", "bob"))
	got = f.do("r5", `<iq type='get' id='v1' from='bob@example.com/b' to='r5@conference.example.com/alice'><query xmlns='jabber:iq:version'/></iq>`)
	fwd := mustFind(t, got, `to="alice@example.com/a"`, `from="r5@conference.example.com/bob"`, `jabber:iq:version`)
	_, after, _ := strings.Cut(fwd, `id="`)
	fid, _, _ := strings.Cut(after, `"`)
	got = f.do("r5", `<iq type='result' id='`+fid+`' from='alice@example.com/a' to='r5@conference.example.com/bob'><query xmlns='jabber:iq:version'><name>x</name></query></iq>`)
	mustFind(t, got, `id="v1"`, `type="result"`, `from="r5@conference.example.com/alice"`, `to="bob@example.com/b"`, `<name>x</name>`)
	got = f.do("r5", `<iq type='get' id='v2' from='bob@example.com/b' to='r5@conference.example.com/alice'><vCard xmlns='vcard-temp'/></iq>`)
	mustFind(t, got, `to="alice@example.com"`, `from="r5@conference.example.com/bob"`, `vcard-temp`)
	// An answer from someone who is not in the room goes nowhere.
	got = f.do("r5", `<iq type='result' id='`+fid+`' from='eve@example.com/e' to='r5@conference.example.com/bob'/>`)
	if n := len(find(got, `id="v1"`)); n != 0 {
		t.Fatalf("a stranger's answer was passed on: %q", got)
	}
	f.do("r5", `<presence type='unavailable' from='bob@example.com/b' to='r5@conference.example.com/bob'/>`)
	// Leaving empties the temporary room, which is then gone.
	got = f.do("r5", `<presence type='unavailable' from='alice@example.com/a' to='r5@conference.example.com/alice'/>`)
	mustFind(t, got, `type="unavailable"`, `to="alice@example.com/a"`, `code="110"`)
	got = f.do("r5", `<iq type='get' id='i2' from='bob@example.com/b' to='r5@conference.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	mustFind(t, got, `id="i2"`, `item-not-found`)
}

func TestPersistentRoomSurvivesRestart(t *testing.T) {
	h := plugintest.NewHost(t)
	f := &fixture{t: t, h: h, m: h.Start(t, muc.New())}
	f.do("r6", join("r6", "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='r6@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomname'><value>Six</value></field></x></query></iq>`,
		`<iq type='set' id='m1' from='alice@example.com/a' to='r6@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@example.com' affiliation='member'/></query></iq>`,
		`<presence type='unavailable' from='alice@example.com/a' to='r6@conference.example.com/alice'/>`)
	if err := f.m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A new node on the same store.
	h2 := plugintest.NewHostWithStore(t, h.St)
	f2 := &fixture{t: t, h: h2, m: h2.Start(t, muc.New())}
	got := f2.do("r6", `<iq type='get' id='i1' from='bob@example.com/b' to='r6@conference.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := mustFind(t, got, `id="i1"`, `type="result"`)
	if !strings.Contains(info, `name="Six"`) || !strings.Contains(info, "muc_persistent") {
		t.Errorf("persistent room after restart: %s", info)
	}
	got = f2.do("r6", `<iq type='get' id='l1' from='alice@example.com/a' to='r6@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member'/></query></iq>`)
	mustFind(t, got, `id="l1"`, `jid="bob@example.com"`)
}

// TestHostCrashKeepsSurvivingOccupants runs two nodes on an in-memory
// cluster: the room is hosted by b, alice is on a, bob on b. b crashes:
// the room moves to a, alice is still in it (her messages are reflected
// to her without joining again) and learns that bob, whose session died
// with b, left.
func TestHostCrashKeepsSurvivingOccupants(t *testing.T) {
	net, fa, fb, room := twoNodes(t, false)
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		fmt.Sprintf(`<iq type='set' id='cfg' from='alice@example.com/a' to='%s@%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room, svc))
	got := fb.do(room, join(room, "bob@example.com/b", "bob"))
	mustFind(t, got, `to="bob@example.com/b"`, `code="110"`)
	got = fa.do(room, `<message type='groupchat' id='m1' from='alice@example.com/a' to='`+room+`@conference.example.com'><body>one</body></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `<body>one</body>`)
	got = fb.do(room)
	mustFind(t, got, `to="bob@example.com/b"`, `<body>one</body>`)

	net.Crash("b")
	net.Leave("b")
	got = fa.do(room, `<message type='groupchat' id='m2' from='alice@example.com/a' to='`+room+`@conference.example.com'><body>two</body></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `type="groupchat"`, `from="`+room+`@conference.example.com/alice"`, `<body>two</body>`)
	mustFind(t, got, `type="unavailable"`, `from="`+room+`@conference.example.com/bob"`, `to="alice@example.com/a"`)
	if n := len(find(got, `type="unavailable"`, `to="alice@example.com/a"`, `code="110"`)); n != 0 {
		t.Fatalf("alice was thrown out: %q", got)
	}
	// The room kept its owner (the store): alice still configures it.
	got = fa.do(room, fmt.Sprintf(`<iq type='get' id='c2' from='alice@example.com/a' to='%s@%s'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`, room, svc))
	mustFind(t, got, `id="c2"`, `type="result"`, `muc#roomconfig_roomname`)
}

// TestRoomArchive: with the message archive running, room messages carry
// the room's stanza-id, the room answers MAM queries with them, and a
// host that takes over after a crash serves the history from the archive.
func TestRoomArchive(t *testing.T) {
	net, fa, fb, room := twoNodes(t, true)
	hb := fb.h
	rj := room + "@" + svc
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	var got []string
	for i := 1; i <= 3; i++ {
		got = append(got, fa.do(room, fmt.Sprintf(`<message type='groupchat' id='m%d' from='alice@example.com/a' to='%s'><body>line %d</body></message>`, i, rj, i))...)
	}
	line1 := mustFind(t, got, `<body>line 1</body>`, `to="alice@example.com/a"`)
	if !strings.Contains(line1, `<stanza-id xmlns="urn:xmpp:sid:0" by="`+rj+`"`) {
		t.Fatalf("no room stanza-id: %s", line1)
	}
	got = fa.do(room, `<iq type='get' id='i1' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	mustFind(t, got, `id="i1"`, `urn:xmpp:mam:2`)
	// The room's host (b) sends the results and the answer through its
	// router (in the fake: b's record).
	fa.do(room, `<iq type='set' id='q1' from='alice@example.com/a' to='`+rj+`'><query xmlns='urn:xmpp:mam:2' queryid='x'/></iq>`)
	got = hb.Routed()
	if n := len(find(got, `<result xmlns="urn:xmpp:mam:2"`, `queryid="x"`, `from="`+rj+`"`)); n != 3 {
		t.Fatalf("want 3 archived messages, got %d in %q", n, got)
	}
	mustFind(t, got, `id="q1"`, `type="result"`, `<fin`)
	// XEP-0425: the owner, a moderator, retracts line 2 for everyone.
	_, after, _ := strings.Cut(mustFind(t, got, `<body>line 2</body>`), `<result xmlns="urn:xmpp:mam:2" id="`)
	sid, _, _ := strings.Cut(after, `"`)
	got = fa.do(room, `<iq type='set' id='mod1' from='alice@example.com/a' to='`+rj+`'><moderate xmlns='urn:xmpp:message-moderate:1' id='`+sid+`'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>`)
	mustFind(t, got, `id="mod1"`, `type="result"`)
	fa.do(room, `<iq type='set' id='mod2' from='eve@example.com/e' to='`+rj+`'><moderate xmlns='urn:xmpp:message-moderate:1' id='`+sid+`'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>`)
	mustFind(t, hb.Routed(), `id="mod2"`, `forbidden`)
	mustFind(t, got, `to="alice@example.com/a"`, `<retract xmlns="urn:xmpp:message-retract:1" id="`+sid+`"`, `<moderated`, `spam`)
	fa.do(room, `<iq type='set' id='q3' from='alice@example.com/a' to='`+rj+`'><query xmlns='urn:xmpp:mam:2' queryid='y'/></iq>`)
	got = hb.Routed()
	if tomb := mustFind(t, got, `queryid="y"`, `id="m2"`); strings.Contains(tomb, "line 2") || !strings.Contains(tomb, "<retracted") {
		t.Fatalf("the archive keeps the message, not a tombstone: %s", tomb)
	}
	// Not in an open room's archive: a members-only room keeps strangers out.
	got = fa.do(room, `<iq type='set' id='cfg2' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>`,
		`<iq type='set' id='q2' from='eve@example.com/e' to='`+rj+`'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	got = append(got, hb.Routed()...)
	mustFind(t, got, `id="q2"`, `forbidden`)

	// The host dies with the history it kept; the next one reads the archive.
	net.Crash("b")
	net.Leave("b")
	_ = fb
	got = fa.do(room, `<iq type='set' id='m1' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@example.com' affiliation='member'/></query></iq>`,
		join(room, "bob@example.com/b2", "bob", `<history maxstanzas='2'/>`))
	var hist []string
	for _, s := range find(got, `to="bob@example.com/b2"`, `urn:xmpp:delay`) {
		hist = append(hist, s)
	}
	// The moderated line 2 is not history any more.
	if len(hist) != 2 || !strings.Contains(hist[0], "line 1") || !strings.Contains(hist[1], "line 3") {
		t.Fatalf("history after the crash: %q", hist)
	}
}

// twoNodes runs group chat (and the message archive, withMAM) on two
// fake nodes a and b of one in-memory cluster and one store, and returns
// a room name that b hosts.
func twoNodes(t *testing.T, withMAM bool) (*plugintest.Net, *fixture, *fixture, string) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	fa := startNode(t, net, nil, "a", withMAM)
	fb := startNode(t, net, fa.h.St, "b", withMAM)
	for i := 0; ; i++ {
		if k := fmt.Sprintf("room%d", i); plugins.Rendezvous(k, []plugins.Member{{Name: "a"}, {Name: "b"}}) == "b" {
			return net, fa, fb, k
		}
	}
}

// startNode joins a fake node to net and starts group chat on it, on st
// (a new store when nil).
func startNode(t *testing.T, net *plugintest.Net, st storage.Store, name string, withMAM bool) *fixture {
	return startNodeWith(t, net, st, name, withMAM, nil)
}

// startNodeWith is startNode with setup, when not nil, changing the
// node's host (its configuration) before the plugins start.
func startNodeWith(t *testing.T, net *plugintest.Net, st storage.Store, name string, withMAM bool, setup func(*plugintest.Host)) *fixture {
	var h *plugintest.Host
	if st == nil {
		h = plugintest.NewHost(t)
	} else {
		h = plugintest.NewHostWithStore(t, st)
	}
	h.Node = net.Join(name)
	list := []plugins.Plugin{muc.New()}
	if withMAM {
		h.Cfg.MAM.MaxPage = 100
		h.Cfg.Database.Timeout = 5 * time.Second
		list = append(list, mam.New())
	}
	if setup != nil {
		setup(h)
	}
	return &fixture{t: t, h: h, m: h.Start(t, list...)}
}

// TestRoomMovesOnJoinWithItsState: a node joins and wins the room; the
// old host hands it over (Release, Rebuild): no occupant is thrown out,
// the voice a moderator gave and the history move with it.
func TestRoomMovesOnJoinWithItsState(t *testing.T) {
	net, fa, fb, _ := twoNodes(t, false)
	two := []plugins.Member{{Name: "a"}, {Name: "b"}}
	three := append(two, plugins.Member{Name: "c"})
	room := ""
	for i := 0; room == ""; i++ {
		if k := fmt.Sprintf("room%d", i); plugins.Rendezvous(k, two) == "a" && plugins.Rendezvous(k, three) == "c" {
			room = k
		}
	}
	rj := room + "@" + svc
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>`)
	fb.do(room, join(room, "bob@example.com/b", "bob"))
	fa.do(room, `<iq type='set' id='v' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='participant'/></query></iq>`,
		`<message type='groupchat' from='alice@example.com/a' to='`+rj+`'><body>before</body></message>`)
	fb.h.Routed()

	fc := startNode(t, net, fa.h.St, "c", false)
	got := fb.do(room, `<message type='groupchat' from='bob@example.com/b' to='`+rj+`'><body>after</body></message>`)
	mustFind(t, got, `to="bob@example.com/b"`, `from="`+rj+`/bob"`, `<body>after</body>`)
	if n := len(find(got, `type="unavailable"`)); n != 0 {
		t.Fatalf("someone left during the move: %q", got)
	}
	got = fc.do(room, join(room, "carol@example.com/c", "carol"))
	if n := len(find(got, `to="carol@example.com/c"`, `urn:xmpp:delay`, `<body>before</body>`)); n != 1 {
		t.Fatalf("the history did not move with the room: %q", got)
	}
	mustFind(t, got, `to="carol@example.com/c"`, `code="110"`, `role="visitor"`)
	if h := fc.m.Plugin(muc.ID).(*muc.Plugin).Hosted(); !slices.Contains(h, room) {
		t.Errorf("c hosts %v, not %s", h, room)
	}
	if h := fa.m.Plugin(muc.ID).(*muc.Plugin).Hosted(); slices.Contains(h, room) {
		t.Errorf("a still hosts %s", room)
	}
}

// TestMessageRate: an occupant past muc.message_burst is refused with
// resource-constraint, and nothing reaches the room.
func TestMessageRate(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.MUC.MessageRate, h.Cfg.MUC.MessageBurst = 0.001, 3 // no refill during the test
	f := &fixture{t: t, h: h, m: h.Start(t, muc.New())}
	f.instant("r9")
	var got []string
	for i := range 4 {
		got = append(got, f.do("r9", fmt.Sprintf(`<message type='groupchat' id='m%d' from='alice@example.com/a' to='r9@conference.example.com'><body>%d</body></message>`, i, i))...)
	}
	if n := len(find(got, `type="groupchat"`, `from="r9@conference.example.com/alice"`)); n != 3 {
		t.Fatalf("want 3 messages through, got %d: %q", n, got)
	}
	mustFind(t, got, `id="m3"`, `type="error"`, `resource-constraint`)
}

// TestOperatorsListAndDestroy: the admin view lists a room with its
// occupants on whichever node hosts it, and Destroy empties it.
func TestOperatorsListAndDestroy(t *testing.T) {
	_, fa, fb, room := twoNodes(t, false)
	rj := room + "@" + svc
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomname'><value>Ops</value></field></x></query></iq>`)
	fb.do(room, join(room, "bob@example.com/b", "bob"))
	pa := fa.m.Plugin(muc.ID).(*muc.Plugin)
	rooms, err := pa.Rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].JID != rj || rooms[0].Node != "b" || rooms[0].Name != "Ops" || len(rooms[0].Occupants) != 2 ||
		rooms[0].Occupants[0].Nick != "alice" || rooms[0].Occupants[0].Affiliation != "owner" {
		t.Fatalf("rooms: %+v", rooms)
	}
	if err := pa.Destroy(context.Background(), room, "closing"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for deadline := time.Now().Add(10 * time.Second); len(find(got, `<destroy`)) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // polling what the fake node recorded
		got = append(got, fa.h.Routed()...)
	}
	mustFind(t, got, `type="unavailable"`, `to="alice@example.com/a"`, `<destroy`, `closing`)
	rooms, err = pa.Rooms(context.Background())
	if err != nil || len(rooms) != 0 {
		t.Fatalf("after Destroy: %+v, %v", rooms, err)
	}
}

// TestSwitchOffAndOn: with clustering switched off each node hosts the
// room for its own users; switched back on, the copies merge into one
// room on one host, with every occupant in it and told who is there.
func TestSwitchOffAndOn(t *testing.T) {
	net, fa, fb, room := twoNodes(t, false)
	rj := room + "@" + svc
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	fb.do(room, join(room, "bob@example.com/b", "bob"))
	fa.h.Routed()
	net.Alone("a", true)
	net.Alone("b", true)
	got := fa.do(room, `<message type='groupchat' from='alice@example.com/a' to='`+rj+`'><body>alone</body></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `<body>alone</body>`)
	net.Alone("a", false)
	net.Alone("b", false)
	got = fa.do(room, `<message type='groupchat' from='alice@example.com/a' to='`+rj+`'><body>together</body></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `from="`+rj+`/alice"`, `<body>together</body>`)
	got = fb.do(room)
	mustFind(t, got, `to="bob@example.com/b"`, `from="`+rj+`/alice"`, `<body>together</body>`)
	// bob is told alice is there (again), whatever he saw while apart:
	// the last presence from her he got says she is in.
	last := ""
	for _, s := range find(got, `to="bob@example.com/b"`, `from="`+rj+`/alice"`, `<presence`) {
		last = s
	}
	if last == "" || strings.Contains(last, `type="unavailable"`) {
		t.Fatalf("bob last heard of alice: %q (all: %q)", last, got)
	}
}

// TestRegisterWhileInRoomBroadcastsMembership: an occupant who registers
// its nickname becomes a member, and every occupant is told at once by a
// presence carrying the new affiliation (§9.3), as for any membership
// grant. Converse.js registers on entering a room; without the presence
// the owner's page kept the guest as affiliation none until the guest
// next changed presence.
func TestRegisterWhileInRoomBroadcastsMembership(t *testing.T) {
	f := newFixture(t)
	f.instant("r10m")
	f.do("r10m", join("r10m", "bob@example.com/b", "bob"))
	got := f.do("r10m", `<iq type='set' id='s1' from='bob@example.com/b' to='r10m@conference.example.com'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field><field var='muc#register_roomnick'><value>bob</value></field></x></query></iq>`)
	mustFind(t, got, `id="s1"`, `type="result"`)
	mustFind(t, got, `<presence`, `from="r10m@conference.example.com/bob"`, `to="alice@example.com/a"`, `affiliation="member"`, `role="participant"`)
	mustFind(t, got, `<presence`, `from="r10m@conference.example.com/bob"`, `to="bob@example.com/b"`, `affiliation="member"`, `code="110"`)
}

// TestRegisterNick (§7.10, §7.12): a user registers a nickname with a
// room, becomes a member, finds the nickname by disco, and no one else
// enters under it.
func TestRegisterNick(t *testing.T) {
	f := newFixture(t)
	f.instant("r10")
	got := f.do("r10", `<iq type='get' id='g1' from='bob@example.com/b' to='r10@conference.example.com'><query xmlns='jabber:iq:register'/></iq>`)
	mustFind(t, got, `id="g1"`, `muc#register_roomnick`)
	got = f.do("r10", `<iq type='set' id='s1' from='bob@example.com/b' to='r10@conference.example.com'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field><field var='muc#register_roomnick'><value>bobby</value></field></x></query></iq>`)
	mustFind(t, got, `id="s1"`, `type="result"`)
	got = f.do("r10", `<iq type='get' id='g2' from='bob@example.com/b2' to='r10@conference.example.com'><query xmlns='jabber:iq:register'/></iq>`,
		`<iq type='get' id='d1' from='bob@example.com/b2' to='r10@conference.example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>`,
		`<iq type='get' id='l1' from='alice@example.com/a' to='r10@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member'/></query></iq>`)
	mustFind(t, got, `id="g2"`, `<registered/>`, `<username>bobby</username>`)
	mustFind(t, got, `id="d1"`, `name="bobby"`)
	mustFind(t, got, `id="l1"`, `jid="bob@example.com"`, `nick="bobby"`)
	got = f.do("r10", join("r10", "carol@example.com/c", "bobby"))
	mustFind(t, got, `to="carol@example.com/c"`, `<conflict`)
	got = f.do("r10", `<iq type='set' id='s2' from='carol@example.com/c' to='r10@conference.example.com'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='muc#register_roomnick'><value>bobby</value></field></x></query></iq>`)
	mustFind(t, got, `id="s2"`, `<conflict`)
}

// TestLastNodeStopSays332: when the last node stops, every occupant's
// session is told it leaves because the service shuts down (110 + 332)
// before the sessions close, and the room is empty. With another node
// left to take the rooms over, a stopping node tells nobody anything.
func TestLastNodeStopSays332(t *testing.T) {
	f := newFixture(t)
	f.instant("r332")
	f.do("r332", join("r332", "bob@example.com/b", "bob"), join("r332", "bob@example.com/b2", "bob"))
	f.h.Routed()
	if rooms, err := f.m.Plugin(muc.ID).(*muc.Plugin).Rooms(context.Background()); err != nil || len(rooms) != 1 || len(rooms[0].Occupants) != 2 {
		t.Fatalf("before: %+v, %v", rooms, err)
	}
	f.m.SessionsClosing(context.Background())
	got := f.h.Routed()
	for _, to := range []string{"alice@example.com/a", "bob@example.com/b", "bob@example.com/b2"} {
		mustFind(t, got, `to="`+to+`"`, `type="unavailable"`, `code="110"`, `code="332"`)
	}
	if len(got) != 3 {
		t.Errorf("%d stanzas, want 3 (each session its own presence):\n%s", len(got), strings.Join(got, "\n"))
	}
	// The room was temporary: empty, it is gone.
	if rooms, err := f.m.Plugin(muc.ID).(*muc.Plugin).Rooms(context.Background()); err != nil || len(rooms) != 0 {
		t.Errorf("after the goodbye: %+v, %v", rooms, err)
	}

	_, fa, fb, room := twoNodes(t, false)
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		fmt.Sprintf(`<iq type='set' id='cfg' from='alice@example.com/a' to='%s@%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room, svc))
	fb.do(room, join(room, "bob@example.com/b", "bob"))
	fa.h.Routed()
	fb.h.Routed()
	fb.m.SessionsClosing(context.Background()) // b hosts the room; a stays
	got = append(fa.do(room), fb.do(room)...)
	if n := len(find(got, `code="332"`)); n != 0 {
		t.Errorf("332 while another node takes the room: %q", got)
	}
}

// TestHostCrashKeepsRoles: roles a moderator changed (voice given to a
// visitor, taken from a member) are not stored; when the host crashes,
// the new host learns them from the occupants' nodes instead of handing
// out the defaults again (a devoiced member could speak again).
func TestHostCrashKeepsRoles(t *testing.T) {
	net, fa, _, room := twoNodes(t, false)
	rj := room + "@" + svc
	fa.do(room, join(room, "alice@example.com/a", "alice"),
		`<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>`,
		`<iq type='set' id='m' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='carol@example.com' affiliation='member'/></query></iq>`)
	fa.do(room, join(room, "bob@example.com/b", "bob"), join(room, "carol@example.com/c", "carol"))
	got := fa.do(room,
		`<iq type='set' id='v1' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='participant'/></query></iq>`,
		`<iq type='set' id='v2' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='carol' role='visitor'/></query></iq>`)
	mustFind(t, got, `id="v1"`, `type="result"`)
	mustFind(t, got, `id="v2"`, `type="result"`)

	net.Crash("b") // the host
	net.Leave("b")
	got = fa.do(room, `<message type='groupchat' id='bm' from='bob@example.com/b' to='`+rj+`'><body>bob speaks</body></message>`,
		`<message type='groupchat' id='cm' from='carol@example.com/c' to='`+rj+`'><body>carol speaks</body></message>`)
	mustFind(t, got, `to="alice@example.com/a"`, `<body>bob speaks</body>`)
	if n := len(find(got, `<body>carol speaks</body>`, `type="groupchat"`)); n != 0 {
		t.Errorf("the devoiced member spoke after the crash: %q", got)
	}
	mustFind(t, got, `id="cm"`, `type="error"`, `forbidden`)
}

// TestHostCrashKeepsLockedRoom: a room created with the MUC element is
// locked until its owner submits the configuration form. When its host
// crashes meanwhile, the new host keeps it locked and the owner's: a
// stranger cannot walk in, and the owner's form still configures it.
// (Rebuilt from the occupants alone, it came back open, with no owner.)
func TestHostCrashKeepsLockedRoom(t *testing.T) {
	net, fa, _, room := twoNodes(t, false)
	rj := room + "@" + svc
	got := fa.do(room, join(room, "alice@example.com/a", "alice"))
	mustFind(t, got, `code="201"`)
	net.Crash("b") // the host
	net.Leave("b")
	got = fa.do(room, join(room, "mallory@example.com/m", "mallory"))
	mustFind(t, got, `to="mallory@example.com/m"`, `type="error"`, `item-not-found`)
	got = fa.do(room, `<iq type='set' id='cfg' from='alice@example.com/a' to='`+rj+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	mustFind(t, got, `id="cfg"`, `type="result"`)
	got = fa.do(room, join(room, "mallory@example.com/m", "mallory"))
	mustFind(t, got, `to="mallory@example.com/m"`, `code="110"`)
}

// TestJoinOrder: a new occupant gets every existing occupant's presence,
// then its own with status 110, and only then the room's history and
// subject (XEP-0045 §7.2.2, §7.2.3).
func TestJoinOrder(t *testing.T) {
	f := newFixture(t)
	f.instant("order")
	f.do("order", join("order", "bob@example.com/b", "bob"))
	f.do("order", fmt.Sprintf(`<message type='groupchat' from='alice@example.com/a' to='order@%s'><subject>topic</subject></message>`, svc))
	got := f.do("order", join("order", "carol@example.com/c", "carol"))
	var toCarol []string
	for _, s := range got {
		if strings.Contains(s, `to="carol@example.com/c"`) {
			toCarol = append(toCarol, s)
		}
	}
	self := slices.IndexFunc(toCarol, func(s string) bool { return strings.Contains(s, `code="110"`) })
	alice := slices.IndexFunc(toCarol, func(s string) bool { return strings.Contains(s, `from="order@`+svc+`/alice"`) })
	bob := slices.IndexFunc(toCarol, func(s string) bool { return strings.Contains(s, `from="order@`+svc+`/bob"`) })
	subject := slices.IndexFunc(toCarol, func(s string) bool { return strings.Contains(s, "<subject>") })
	if self < 0 || alice < 0 || bob < 0 || subject < 0 {
		t.Fatalf("carol got (self %d, alice %d, bob %d, subject %d):\n%s", self, alice, bob, subject, strings.Join(toCarol, "\n"))
	}
	if !(alice < self && bob < self && self < subject) {
		t.Fatalf("order: alice %d, bob %d, self %d, subject %d, want both occupants before self-presence before the subject:\n%s", alice, bob, self, subject, strings.Join(toCarol, "\n"))
	}
}
