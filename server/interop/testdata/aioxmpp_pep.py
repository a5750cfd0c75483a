"""An aioxmpp client logs in and looks for PEP the way aioxmpp's end-to-end
test provisioner does (aioxmpp.e2etest.provision: disco.query_info(None),
a disco#info without 'to', then a pubsub/pep identity in the answer), then
publishes an item to a PEP node and reads it back.

usage: aioxmpp_pep.py HOST PORT JID PASSWORD
Prints OK (exit 0), or what failed (exit 1).
"""
import asyncio
import logging
import os
import sys

import aioxmpp
import aioxmpp.connector
import aioxmpp.pubsub
import aioxmpp.xso

HOST, PORT, JID, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING,
                    format="%(levelname)s %(name)s %(message)s")

NODE = "urn:example:aviary-test"


@aioxmpp.pubsub.xso.as_payload_class
class Note(aioxmpp.xso.XSO):
    TAG = (NODE, "note")
    text = aioxmpp.xso.Text()


async def main():
    jid = aioxmpp.JID.fromstr(JID)
    # The test server has a self-signed certificate.
    security = aioxmpp.make_security_layer(PASSWORD, no_verify=True)
    client = aioxmpp.PresenceManagedClient(
        jid, security,
        override_peer=[(HOST, PORT, aioxmpp.connector.STARTTLSConnector())],
    )
    async with client.connected():
        disco = client.summon(aioxmpp.DiscoClient)
        info = await disco.query_info(None)
        if not any(i.category == "pubsub" and i.type_ == "pep" for i in info.identities):
            print("FAIL: no pubsub/pep identity in the account's disco#info: %r" %
                  ([(i.category, i.type_) for i in info.identities],), flush=True)
            return 1
        pep = client.summon(aioxmpp.PEPClient)
        pubsub = client.summon(aioxmpp.PubSubClient)
        note = Note()
        note.text = "hello from aioxmpp"
        await pep.publish(NODE, note, id_="current")
        got = await pubsub.get_items_by_id(jid.bare(), NODE, ["current"])
        items = [it.registered_payload.text for it in got.payload.items if it.registered_payload is not None]
        if items != ["hello from aioxmpp"]:
            print("FAIL: read back %r" % (items,), flush=True)
            return 1
    print("OK", flush=True)
    return 0


sys.exit(asyncio.run(asyncio.wait_for(main(), 30)))
