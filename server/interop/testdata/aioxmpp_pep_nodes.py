"""An aioxmpp client publishes, retrieves and reconfigures PEP nodes and
publishes its avatar, with aioxmpp's own services (PubSubClient,
AvatarService, VCardService):

1. publishes four notes with publish-options (max_items 3, open): the
   node is created with them and keeps the newest three;
2. reads them all, by ID and by max_items;
3. publishes with publish-options the node does not meet: conflict with
   the pubsub#errors <precondition-not-met/> (XEP-0223);
4. reconfigures the node (whitelist, max_items 1): the oldest items go,
   the configuration reads back, and the publish that failed now passes;
5. publishes an avatar (XEP-0084 data and metadata), reads it back over
   PEP, finds it as its vCard PHOTO (XEP-0398), and disables it.

usage: aioxmpp_pep_nodes.py HOST PORT JID PASSWORD
Prints OK (exit 0), or what failed (exit 1).
"""
import asyncio
import base64
import sys

import aioxmpp
import aioxmpp.avatar
import aioxmpp.forms
import aioxmpp.pubsub
import aioxmpp.stanza
import aioxmpp.vcard
import aioxmpp.xso

from clientcheck import Fail, aioxmpp_client, check, run

HOST, PORT, JID, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

NODE = "urn:example:aviary-notes"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
# A 2x3 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAADCAIAAAA2iEnWAAAAEElEQVR4nGP4z8AARAwoFABE0AX7pM/egAAAAABJRU5ErkJggg==")

PreconditionNotMet = aioxmpp.stanza.make_application_error("PreconditionNotMet", (ERRORS, "precondition-not-met"))


@aioxmpp.pubsub.xso.as_payload_class
class Note(aioxmpp.xso.XSO):
    TAG = (NODE, "note")
    text = aioxmpp.xso.Text()


def note(text):
    n = Note()
    n.text = text
    return n


def options(**fields):
    form = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
    form.fields.append(aioxmpp.forms.Field(
        type_=aioxmpp.forms.FieldType.HIDDEN, var="FORM_TYPE",
        values=["http://jabber.org/protocol/pubsub#publish-options"]))
    for var, value in fields.items():
        form.fields.append(aioxmpp.forms.Field(var="pubsub#" + var, values=[value]))
    return form


def texts(response):
    return [(it.id_, it.registered_payload.text) for it in response.payload.items
            if it.registered_payload is not None]


async def main():
    jid = aioxmpp.JID.fromstr(JID)
    me = jid.bare()
    client = aioxmpp_client(JID, PASSWORD, HOST, PORT)
    async with client.connected():
        pubsub = client.summon(aioxmpp.PubSubClient)

        # 1, 2: created by publish-options, the newest three kept.
        for i in range(1, 5):
            await pubsub.publish(me, NODE, note("note %d" % i), id_="n%d" % i,
                                 publish_options=options(max_items="3", access_model="open"))
        check("all items", texts(await pubsub.get_items(me, NODE)),
              [("n2", "note 2"), ("n3", "note 3"), ("n4", "note 4")])
        check("by ID", texts(await pubsub.get_items_by_id(me, NODE, ["n3"])), [("n3", "note 3")])
        check("max_items=1", texts(await pubsub.get_items(me, NODE, max_items=1)), [("n4", "note 4")])

        # 3: publish-options the node does not meet.
        try:
            await pubsub.publish(me, NODE, note("refused"), id_="n5",
                                 publish_options=options(access_model="whitelist"))
            raise Fail("a publish with mismatching publish-options passed")
        except aioxmpp.errors.XMPPError as e:
            check("error condition", e.condition, aioxmpp.ErrorCondition.CONFLICT)
            if not isinstance(e.application_defined_condition, PreconditionNotMet):
                raise Fail("no <precondition-not-met/>: %r" % (e.application_defined_condition,))

        # 4: reconfigure the node: whitelist, one item.
        form = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, NODE))
        check("access model before", form.access_model.value, "open")
        form.access_model.value = "whitelist"
        form.max_items.value = "1"
        await pubsub.set_node_config(me, form.render_reply(), NODE)
        form = aioxmpp.pubsub.NodeConfigForm.from_xso(await pubsub.get_node_config(me, NODE))
        check("access model after", form.access_model.value, "whitelist")
        check("max_items after", form.max_items.value, "1")
        check("items after reconfiguring", texts(await pubsub.get_items(me, NODE)), [("n4", "note 4")])
        await pubsub.publish(me, NODE, note("now met"), id_="n5",
                             publish_options=options(access_model="whitelist"))
        check("items after the retried publish", texts(await pubsub.get_items(me, NODE)), [("n5", "now met")])

        # 5: the avatar, over PEP and as the vCard PHOTO.
        avatar = client.summon(aioxmpp.avatar.AvatarService)
        vcard = client.summon(aioxmpp.vcard.VCardService)
        aset = aioxmpp.avatar.AvatarSet()
        aset.add_avatar_image("image/png", image_bytes=PNG)
        await avatar.publish_avatar_set(aset)
        meta = await avatar.get_avatar_metadata(me, require_fresh=True)
        check("avatar descriptors", [(d.id_, d.mime_type, d.nbytes) for d in meta],
              [(aset.png_id, "image/png", len(PNG))])
        check("avatar bytes over PEP", await meta[0].get_image_bytes(), PNG)
        card = await vcard.get_vcard()
        check("vCard PHOTO", (card.get_photo_mime_type(), card.get_photo_data()), ("image/png", PNG))
        await avatar.disable_avatar()
        check("avatar after disabling", await avatar.get_avatar_metadata(me, require_fresh=True), [])
        card = await vcard.get_vcard()
        check("vCard PHOTO after disabling", card.get_photo_data(), None)


run(main)
