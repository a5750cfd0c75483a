"""Two clients of one account keep bookmarks and an avatar through
different XEPs, and each sees what the other did:

- "legacy", a slixmpp client: XEP-0048 bookmarks in private XML
  (XEP-0049) and the vcard-temp PHOTO (XEP-0054/0153);
- "modern", an aioxmpp client: XEP-0402 bookmarks on PEP and the
  XEP-0084 avatar.

1. legacy stores a bookmark in private XML; modern finds it among its
   XEP-0402 items;
2. modern publishes a XEP-0402 bookmark; legacy finds both in private XML;
3. legacy sets a vCard PHOTO; modern finds it as its XEP-0084 avatar;
4. modern publishes another avatar; legacy finds it as its vCard PHOTO.

usage: bookmarks_avatars_two_clients.py HOST PORT JID PASSWORD
Prints OK (exit 0), or what failed (exit 1).
"""
import asyncio
import base64
import hashlib
import ssl
import sys

import aioxmpp
import aioxmpp.avatar
import aioxmpp.forms
import aioxmpp.pubsub
import aioxmpp.xso
from slixmpp import ClientXMPP

from clientcheck import Fail, aioxmpp_client, check, run

HOST, PORT, JID, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
# Two PNG images: 2x3 and 4x4 red pixels.
PNG1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAADCAIAAAA2iEnWAAAAEElEQVR4nGP4z8AARAwoFABE0AX7pM/egAAAAABJRU5ErkJggg==")
PNG2 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGP4z8AARwzEcQCukw/x0F8jngAAAABJRU5ErkJggg==")


@aioxmpp.pubsub.xso.as_payload_class
class Conference(aioxmpp.xso.XSO):
    """A XEP-0402 bookmark (aioxmpp has none of its own)."""
    TAG = (NS_BOOKMARKS, "conference")
    name = aioxmpp.xso.Attr("name", default=None)
    autojoin = aioxmpp.xso.Attr("autojoin", default=None)
    nick = aioxmpp.xso.ChildText((NS_BOOKMARKS, "nick"), default=None)


class Legacy(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The test server has a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0048", {"storage_method": "xep_0049", "auto_join": False})
        self.register_plugin("xep_0054")
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        # failed_auth comes once per mechanism slixmpp tries (it offers
        # SCRAM-*-PLUS with tls-unique, which TLS 1.3 has not, and goes on);
        # failed_all_auth when none is left.
        self.add_event_handler("failed_all_auth", lambda _: self.started.done() or self.started.set_exception(Fail("legacy: auth failed")))

    async def on_start(self, _):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    async def bookmarks(self):
        """The rooms of the XEP-0048 bookmarks in private XML."""
        iq = await self["xep_0048"].get_bookmarks(method="xep_0049")
        return sorted(str(c["jid"]) for c in iq["private"]["bookmarks"]["conferences"])

    async def photo(self):
        """The vCard PHOTO's type and bytes."""
        iq = await self["xep_0054"].get_vcard(self.boundjid.bare, local=False)
        binval = iq.xml.find(".//{vcard-temp}PHOTO/{vcard-temp}BINVAL")
        typ = iq.xml.find(".//{vcard-temp}PHOTO/{vcard-temp}TYPE")
        if binval is None:
            return None, None
        return (typ.text if typ is not None else None), base64.b64decode("".join(binval.text.split()))


def publish_options():
    """The publish-options XEP-0402 §3.3 asks for."""
    form = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
    form.fields.append(aioxmpp.forms.Field(type_=aioxmpp.forms.FieldType.HIDDEN, var="FORM_TYPE",
                                           values=["http://jabber.org/protocol/pubsub#publish-options"]))
    for var, value in (("persist_items", "true"), ("max_items", "max"),
                       ("send_last_published_item", "never"), ("access_model", "whitelist")):
        form.fields.append(aioxmpp.forms.Field(var="pubsub#" + var, values=[value]))
    return form


async def main():
    jid = aioxmpp.JID.fromstr(JID)
    me = jid.bare()
    legacy = Legacy(JID + "/legacy", PASSWORD)
    legacy.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(legacy.started, 20)

    modern = aioxmpp_client(JID + "/modern", PASSWORD, HOST, PORT)
    try:
        async with modern.connected():
            pubsub = modern.summon(aioxmpp.PubSubClient)
            avatar = modern.summon(aioxmpp.avatar.AvatarService)

            # 1. XEP-0048 in private XML → XEP-0402.
            stored = legacy["xep_0048"].stanza.Bookmarks()
            stored.add_conference("garden@muc.example.com", "jules", name="Garden", autojoin=True)
            await legacy["xep_0048"].set_bookmarks(stored, method="xep_0049")
            items = await pubsub.get_items(me, NS_BOOKMARKS)
            check("XEP-0402 items after a XEP-0048 store",
                  [(it.id_, it.registered_payload.name, it.registered_payload.nick) for it in items.payload.items],
                  [("garden@muc.example.com", "Garden", "jules")])

            # 2. XEP-0402 → XEP-0048 in private XML.
            conf = Conference()
            conf.name, conf.autojoin, conf.nick = "Orchard", "true", "jules"
            await pubsub.publish(me, NS_BOOKMARKS, conf, id_="orchard@muc.example.com", publish_options=publish_options())
            check("XEP-0048 rooms after a XEP-0402 publish", await legacy.bookmarks(),
                  ["garden@muc.example.com", "orchard@muc.example.com"])

            # 3. vcard-temp PHOTO → XEP-0084.
            vcard = legacy["xep_0054"].make_vcard()
            vcard["FN"] = "Alice"
            vcard["PHOTO"]["TYPE"] = "image/png"
            vcard["PHOTO"]["BINVAL"] = PNG1
            await legacy["xep_0054"].publish_vcard(vcard)
            meta = await avatar.get_avatar_metadata(me, require_fresh=True)
            check("XEP-0084 avatar after a vCard PHOTO",
                  [(d.id_, d.mime_type, d.nbytes, d.width, d.height) for d in meta],
                  [(hashlib.sha1(PNG1).hexdigest(), "image/png", len(PNG1), 2, 3)])
            check("XEP-0084 avatar bytes", await meta[0].get_image_bytes(), PNG1)

            # 4. XEP-0084 → vcard-temp PHOTO.
            aset = aioxmpp.avatar.AvatarSet()
            aset.add_avatar_image("image/png", image_bytes=PNG2, width=4, height=4)
            await avatar.publish_avatar_set(aset)
            check("vCard PHOTO after a XEP-0084 avatar", await legacy.photo(), ("image/png", PNG2))
    finally:
        legacy.disconnect()


run(main)
