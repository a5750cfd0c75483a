package pep_test

// The conversions: XEP-0402 ⇄ XEP-0048 bookmarks (private XML and PEP),
// XEP-0084 ⇄ vcard-temp PHOTO (XEP-0398), XEP-0292 vCard4 ⇄ vcard-temp,
// with the PEP, private XML and vCard plugins running together as on a
// node.

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/private"
	"github.com/aviary-im/aviary/plugins/vcard"
	"github.com/aviary-im/aviary/storage"
)

// Two small PNG images (2×3 and 4×4 red pixels).
const (
	png2x3 = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAADCAIAAAA2iEnWAAAAEElEQVR4nGP4z8AARAwoFABE0AX7pM/egAAAAABJRU5ErkJggg=="
	png4x4 = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGP4z8AARwzEcQCukw/x0F8jngAAAABJRU5ErkJggg=="
)

func sha1Of(t *testing.T, b64 string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

func convertHost(t *testing.T) (*plugintest.Host, *plugins.Manager) {
	t.Helper()
	h := plugintest.NewHost(t)
	if err := h.St.CreateUser(context.Background(), storage.User{Username: "juliet"}); err != nil {
		t.Fatal(err)
	}
	m := h.Start(t, pep.New(), private.New(), vcard.New())
	return h, m
}

// do sends an IQ from one of Juliet's resources and fails on an error.
func do(t *testing.T, h *plugintest.Host, m *plugins.Manager, xml string) string {
	t.Helper()
	got := hide(h.IQ(t, m, plugins.ToAccount, xml))
	if !strings.Contains(got, `type="result"`) {
		t.Fatalf("%s\nanswered %s", xml, got)
	}
	return got
}

func privateBookmarks(t *testing.T, h *plugintest.Host, m *plugins.Manager) string {
	t.Helper()
	return do(t, h, m, `<iq type='get' id='pg' from='juliet@example.com/legacy'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`)
}

func pepItems(t *testing.T, h *plugintest.Host, m *plugins.Manager, node string) string {
	t.Helper()
	return do(t, h, m, `<iq type='get' id='ig' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><items node='`+node+`'/></pubsub></iq>`)
}

// TestBookmarksCompat: XEP-0048 bookmarks stored in private XML appear
// as XEP-0402 items (extensions kept) and on storage:bookmarks, and
// XEP-0402 publishes and retractions show in both XEP-0048 copies; the
// XEP-0402 clients are notified, the account advertises #compat.
func TestBookmarksCompat(t *testing.T) {
	h, m := convertHost(t)
	do(t, h, m, `<iq type='set' id='ps' from='juliet@example.com/legacy'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='Council@muc.example.com' name='Council' autojoin='1'><nick>J</nick><password>s3cret</password><minimize xmlns='urn:example:ext'/></conference>`+
		`<conference jid='garden@muc.example.com' name='Garden'/>`+
		`<url name='Site' url='https://example.com/'/></storage></query></iq>`)
	got := pepItems(t, h, m, pep.NSBookmarks)
	want := `<items node="urn:xmpp:bookmarks:1">` +
		`<item id="council@muc.example.com" publisher="juliet@example.com"><conference xmlns="urn:xmpp:bookmarks:1" name="Council" autojoin="true"><nick>J</nick><password>s3cret</password><extensions><minimize xmlns="urn:example:ext"/></extensions></conference></item>` +
		`<item id="garden@muc.example.com" publisher="juliet@example.com"><conference xmlns="urn:xmpp:bookmarks:1" name="Garden"/></item></items>`
	if !strings.Contains(got, want) {
		t.Fatalf("XEP-0402 items from private XML\ngot  %s\nwant …%s", got, want)
	}
	legacy := pepItems(t, h, m, pep.NSBookmarksLegacy)
	if !strings.Contains(legacy, `<item id="current" publisher="juliet@example.com"><storage xmlns="storage:bookmarks"><conference jid="Council@muc.example.com"`) {
		t.Errorf("storage:bookmarks from private XML: %s", legacy)
	}
	// The server made the nodes as XEP-0402 clients want them.
	cfg := do(t, h, m, `<iq type='get' id='c' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`#owner'><configure node='urn:xmpp:bookmarks:1'/></pubsub></iq>`)
	for _, f := range []string{`var="pubsub#access_model" type="list-single" label="Who may subscribe and retrieve items"><option><value>open</value></option><option><value>presence</value></option><option><value>roster</value></option><option><value>whitelist</value></option><value>whitelist</value>`,
		`var="pubsub#max_items" type="text-single" label="Items kept (a number, or max)"><value>max</value>`,
		`<value>never</value></field>`} {
		if !strings.Contains(cfg, f) {
			t.Errorf("bookmarks node configuration lacks %s: %s", f, cfg)
		}
	}

	// A XEP-0402 client adds a room with the publish-options of the XEP.
	h.Routed()
	do(t, h, m, `<iq type='set' id='add' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><publish node='urn:xmpp:bookmarks:1'><item id='orchard@muc.example.com'><conference xmlns='urn:xmpp:bookmarks:1' name='Orchard' autojoin='true'><nick>Jules</nick><extensions><pinned xmlns='urn:example:ext'/></extensions></conference></item></publish>`+bookmarkOptions+`</pubsub></iq>`)
	got = privateBookmarks(t, h, m)
	want = `<storage xmlns="storage:bookmarks"><conference jid="council@muc.example.com" name="Council" autojoin="true"><nick>J</nick><password>s3cret</password><minimize xmlns="urn:example:ext"/></conference>` +
		`<conference jid="garden@muc.example.com" name="Garden"/>` +
		`<conference jid="orchard@muc.example.com" name="Orchard" autojoin="true"><nick>Jules</nick><pinned xmlns="urn:example:ext"/></conference>` +
		`<url name="Site" url="https://example.com/"/></storage>`
	if !strings.Contains(got, want) {
		t.Fatalf("private XML after a XEP-0402 publish\ngot  %s\nwant …%s", got, want)
	}
	if legacy := pepItems(t, h, m, pep.NSBookmarksLegacy); !strings.Contains(legacy, want) {
		t.Errorf("storage:bookmarks after a XEP-0402 publish: %s", legacy)
	}
	// A XEP-0402 retraction removes the room from both copies.
	do(t, h, m, `<iq type='set' id='rm' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='garden@muc.example.com'/></retract></pubsub></iq>`)
	if got := privateBookmarks(t, h, m); strings.Contains(got, "garden") || !strings.Contains(got, "orchard") {
		t.Errorf("private XML after a retraction: %s", got)
	}
	// A legacy client's change reaches XEP-0402 clients: removed rooms
	// are retracted with a notification to the account's resources.
	do(t, h, m, `<iq type='set' id='ps2' from='juliet@example.com/legacy'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='orchard@muc.example.com' name='Orchard' autojoin='true'><nick>Jules</nick><pinned xmlns='urn:example:ext'/></conference></storage></query></iq>`)
	got = pepItems(t, h, m, pep.NSBookmarks)
	if strings.Contains(got, "council") || !strings.Contains(got, `<item id="orchard@muc.example.com" publisher="juliet@example.com"><conference xmlns="urn:xmpp:bookmarks:1" name="Orchard" autojoin="true"><nick>Jules</nick><extensions><pinned xmlns="urn:example:ext"/></extensions></conference></item>`) {
		t.Errorf("XEP-0402 after a private XML change: %s", got)
	}
	hasFeatures(t, m, pep.FeatureBookmarksCompat, pep.FeatureBookmarksCompatPEP, pep.FeatureBookmarksConvert)
}

// TestBookmarksImport: XEP-0048 bookmarks stored before the conversion
// ran show up the first time a XEP-0402 client asks.
func TestBookmarksImport(t *testing.T) {
	h, m := convertHost(t)
	st := plugintest.Parse(t, `<storage xmlns='storage:bookmarks'><conference jid='old@muc.example.com' name='Old' autojoin='true'/></storage>`)
	if err := private.Save(context.Background(), h.St, juliet, st, storage.Limits{}); err != nil {
		t.Fatal(err)
	}
	got := pepItems(t, h, m, pep.NSBookmarks)
	if !strings.Contains(got, `<item id="old@muc.example.com" publisher="juliet@example.com"><conference xmlns="urn:xmpp:bookmarks:1" name="Old" autojoin="true"/></item>`) {
		t.Errorf("imported bookmarks: %s", got)
	}
}

// TestBookmarksLegacyPEP: a client of XEP-0048 over PEP (storage:bookmarks)
// reaches the other two.
func TestBookmarksLegacyPEP(t *testing.T) {
	h, m := convertHost(t)
	do(t, h, m, `<iq type='set' id='p' from='juliet@example.com/old'><pubsub xmlns='`+nsPS+`'><publish node='storage:bookmarks'><item id='current'><storage xmlns='storage:bookmarks'><conference jid='pep@muc.example.com' name='PEP' autojoin='true'/></storage></item></publish>`+publishOptions("pubsub#persist_items", "true", "pubsub#access_model", "whitelist")+`</pubsub></iq>`)
	if got := privateBookmarks(t, h, m); !strings.Contains(got, `<conference jid="pep@muc.example.com" name="PEP" autojoin="true"/>`) {
		t.Errorf("private XML: %s", got)
	}
	if got := pepItems(t, h, m, pep.NSBookmarks); !strings.Contains(got, `<item id="pep@muc.example.com"`) {
		t.Errorf("XEP-0402: %s", got)
	}
}

// TestAvatarVCard: a vCard PHOTO becomes the XEP-0084 avatar (data and
// metadata with the image's size) and the XEP-0153 hash in presence; an
// avatar published over PEP becomes the PHOTO; disabling the avatar
// removes it.
func TestAvatarVCard(t *testing.T) {
	ctx := context.Background()
	h, m := convertHost(t)
	id1 := sha1Of(t, png2x3)
	do(t, h, m, `<iq type='set' id='v' from='juliet@example.com/legacy'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>`+png2x3[:20]+"\n"+png2x3[20:]+`</BINVAL></PHOTO></vCard></iq>`)
	md := pepItems(t, h, m, pep.NSAvatarMetadata)
	want := `<item id="` + id1 + `" publisher="juliet@example.com"><metadata xmlns="urn:xmpp:avatar:metadata"><info bytes="73" id="` + id1 + `" type="image/png" width="2" height="3"/></metadata></item>`
	if !strings.Contains(md, want) {
		t.Fatalf("metadata from the vCard\ngot  %s\nwant …%s", md, want)
	}
	if data := pepItems(t, h, m, pep.NSAvatarData); !strings.Contains(data, `<item id="`+id1+`" publisher="juliet@example.com"><data xmlns="urn:xmpp:avatar:data">`+png2x3+`</data></item>`) {
		t.Errorf("avatar data from the vCard: %s", data)
	}
	// The presence a session sends carries the hash; a client's own
	// <photo/> is left as it is.
	presence := func(extra string) string {
		el := plugintest.Parse(t, `<presence from='juliet@example.com/legacy'>`+extra+`</presence>`)
		m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: el, Session: "juliet@example.com/legacy"})
		return el.String()
	}
	if got := presence(""); got != `<presence from="juliet@example.com/legacy"><x xmlns="vcard-temp:x:update"><photo>`+id1+`</photo></x></presence>` {
		t.Errorf("presence: %s", got)
	}
	if got := presence(`<x xmlns='vcard-temp:x:update'/>`); got != `<presence from="juliet@example.com/legacy"><x xmlns="vcard-temp:x:update"><photo>`+id1+`</photo></x></presence>` {
		t.Errorf("presence with an empty x: %s", got)
	}
	if got := presence(`<x xmlns='vcard-temp:x:update'><photo/></x>`); got != `<presence from="juliet@example.com/legacy"><x xmlns="vcard-temp:x:update"><photo/></x></presence>` {
		t.Errorf("presence with the client's empty photo: %s", got)
	}
	// The vCard's other fields went to vCard4.
	if v4 := pepItems(t, h, m, pep.NSVCard4); !strings.Contains(v4, `<item id="current" publisher="juliet@example.com"><vcard xmlns="urn:ietf:params:xml:ns:vcard-4.0"><fn><text>Juliet Capulet</text></fn></vcard></item>`) {
		t.Errorf("vCard4 from the vCard: %s", v4)
	}

	// A PEP client publishes another avatar: the vCard follows.
	id2 := sha1Of(t, png4x4)
	do(t, h, m, `<iq type='set' id='d' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><publish node='urn:xmpp:avatar:data'><item id='`+id2+`'><data xmlns='urn:xmpp:avatar:data'>`+png4x4+`</data></item></publish></pubsub></iq>`)
	do(t, h, m, `<iq type='set' id='md' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><publish node='urn:xmpp:avatar:metadata'><item id='`+id2+`'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='1' id='`+id2+`' type='image/png' url='https://example.com/a.png'/><info bytes='73' id='`+id2+`' type='image/png' width='4' height='4'/></metadata></item></publish></pubsub></iq>`)
	v := do(t, h, m, `<iq type='get' id='vg' from='juliet@example.com/legacy'><vCard xmlns='vcard-temp'/></iq>`)
	if want := `<vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>` + png4x4 + `</BINVAL></PHOTO></vCard>`; !strings.Contains(v, want) {
		t.Errorf("vCard after a PEP avatar\ngot  %s\nwant …%s", v, want)
	}
	if got := presence(""); !strings.Contains(got, `<photo>`+id2+`</photo>`) {
		t.Errorf("presence after a PEP avatar: %s", got)
	}
	// Disabling the avatar (empty metadata) removes the PHOTO.
	do(t, h, m, `<iq type='set' id='off' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><publish node='urn:xmpp:avatar:metadata'><item><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub></iq>`)
	v = do(t, h, m, `<iq type='get' id='vg2' from='juliet@example.com/legacy'><vCard xmlns='vcard-temp'/></iq>`)
	if strings.Contains(v, "PHOTO") || !strings.Contains(v, "<FN>Juliet Capulet</FN>") {
		t.Errorf("vCard after disabling the avatar: %s", v)
	}
	if got := presence(""); !strings.Contains(got, `<photo></photo>`) && !strings.Contains(got, `<photo/>`) {
		t.Errorf("presence without avatar: %s", got)
	}
	hasFeatures(t, m, pep.FeatureVCardConversion)
}

// TestVCard4: a vCard4 published over PEP rewrites the fields vcard-temp
// shares with it and keeps the others; its data: photo becomes the
// PHOTO and the avatar.
func TestVCard4(t *testing.T) {
	h, m := convertHost(t)
	do(t, h, m, `<iq type='set' id='v' from='juliet@example.com/legacy'><vCard xmlns='vcard-temp'><FN>Old Name</FN><NICKNAME>Jules</NICKNAME><X-CUSTOM>kept</X-CUSTOM></vCard></iq>`)
	do(t, h, m, `<iq type='set' id='p' from='juliet@example.com/modern'><pubsub xmlns='`+nsPS+`'><publish node='urn:xmpp:vcard4'><item id='current'><vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>`+
		`<fn><text>Juliet Capulet</text></fn><n><surname>Capulet</surname><given>Juliet</given></n><email><text>juliet@example.org</text></email><tel><uri>tel:+1-555-0100</uri></tel><impp><uri>xmpp:juliet@example.com</uri></impp>`+
		`<photo><uri>data:image/png;base64,`+png2x3+`</uri></photo></vcard></item></publish></pubsub></iq>`)
	v := do(t, h, m, `<iq type='get' id='vg' from='juliet@example.com/legacy'><vCard xmlns='vcard-temp'/></iq>`)
	want := `<vCard xmlns="vcard-temp"><X-CUSTOM>kept</X-CUSTOM><FN>Juliet Capulet</FN><N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N><EMAIL><INTERNET/><USERID>juliet@example.org</USERID></EMAIL><TEL><VOICE/><NUMBER>+1-555-0100</NUMBER></TEL><JABBERID>juliet@example.com</JABBERID><PHOTO><TYPE>image/png</TYPE><BINVAL>` + png2x3 + `</BINVAL></PHOTO></vCard>`
	if !strings.Contains(v, want) {
		t.Errorf("vcard-temp from vCard4\ngot  %s\nwant …%s", v, want)
	}
	if md := pepItems(t, h, m, pep.NSAvatarMetadata); !strings.Contains(md, `id="`+sha1Of(t, png2x3)+`"`) {
		t.Errorf("avatar from the vCard4 photo: %s", md)
	}
}

func hasFeatures(t *testing.T, m *plugins.Manager, want ...string) {
	t.Helper()
	for _, f := range want {
		if !slices.Contains(m.AccountFeatures(), f) {
			t.Errorf("account feature %s missing", f)
		}
	}
}
