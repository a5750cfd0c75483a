"""Two aioxmpp clients use the pubsub service (XEP-0060) of the server:

1. alice finds it in the domain's disco#items (identity pubsub/service);
2. alice creates a node, bob subscribes;
3. alice publishes two items: bob is notified of each, once;
4. alice retracts one with notify: bob is told; bob reads the one left;
5. bob may not publish (forbidden); alice deletes the node: bob is told.

usage: aioxmpp_pubsub_service.py HOST PORT DOMAIN PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN, both with PASSWORD)
Prints OK (exit 0), or what failed (exit 1).
"""
import asyncio
import sys

import aioxmpp
import aioxmpp.disco
import aioxmpp.errors
import aioxmpp.pubsub
import aioxmpp.xso

from clientcheck import Fail, aioxmpp_client, check, run

HOST, PORT, DOMAIN, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

NS_NEWS = "urn:example:news"
NODE = "princely_musings"


@aioxmpp.pubsub.xso.as_payload_class
class Entry(aioxmpp.xso.XSO):
    TAG = (NS_NEWS, "entry")
    text = aioxmpp.xso.Text(default="")


def client(user):
    return aioxmpp_client("%s@%s/py" % (user, DOMAIN), PASSWORD, HOST, PORT)


async def next_event(events, what):
    try:
        return await asyncio.wait_for(events.get(), 10)
    except asyncio.TimeoutError:
        raise Fail("no %s notification within 10s" % what)


async def main():
    alice, bob = client("alice"), client("bob")
    async with alice.connected(), bob.connected():
        disco = alice.summon(aioxmpp.DiscoClient)
        service = None
        for item in (await disco.query_items(aioxmpp.JID.fromstr(DOMAIN))).items:
            info = await disco.query_info(item.jid)
            if any(i.category == "pubsub" and i.type_ == "service" for i in info.identities):
                service = item.jid
        if service is None:
            raise Fail("no pubsub service in the disco#items of " + DOMAIN)
        check("the service's address", str(service), "pubsub." + DOMAIN)

        apub, bpub = alice.summon(aioxmpp.PubSubClient), bob.summon(aioxmpp.PubSubClient)
        events = asyncio.Queue()
        bpub.on_item_published.connect(
            lambda jid, node, item, message=None: events.put_nowait(("publish", str(jid), node, item.id_, item.registered_payload.text)))
        bpub.on_item_retracted.connect(
            lambda jid, node, id_, message=None: events.put_nowait(("retract", str(jid), node, id_)))
        bpub.on_node_deleted.connect(
            lambda jid, node, redirect_uri=None, message=None: events.put_nowait(("delete", str(jid), node)))

        await apub.create(service, NODE)
        await bpub.subscribe(service, NODE)

        for id_, text in (("one", "Soliloquy"), ("two", "Retraction")):
            entry = Entry()
            entry.text = text
            await apub.publish(service, NODE, entry, id_=id_)
            check("notification of " + id_, await next_event(events, id_), ("publish", str(service), NODE, id_, text))

        await apub.retract(service, NODE, "one", notify=True)
        check("retraction", await next_event(events, "retract"), ("retract", str(service), NODE, "one"))
        items = await bpub.get_items(service, NODE)
        check("items left", [(it.id_, it.registered_payload.text) for it in items.payload.items], [("two", "Retraction")])

        try:
            await bpub.publish(service, NODE, Entry(), id_="bob")
            raise Fail("bob published to alice's node")
        except aioxmpp.errors.XMPPAuthError as e:
            check("bob's publish", e.condition, aioxmpp.ErrorCondition.FORBIDDEN)

        await apub.delete(service, NODE)
        check("deletion", await next_event(events, "delete"), ("delete", str(service), NODE))
        if not events.empty():
            raise Fail("a notification too many: %r" % (events.get_nowait(),))


run(main)
