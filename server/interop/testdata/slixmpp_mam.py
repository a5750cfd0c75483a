"""slixmpp's XEP-0313 plugin pages backwards through 1,000 archived
messages: alice sends bob 1,000 messages, bob records the stanza-id his
archive stamped on each live copy, then iterates his archive newest first
(RSM <before/>, 50 per page) and must see every message exactly once, under
the ID its live copy carried.

usage: slixmpp_mam.py HOST PORT DOMAIN   (accounts alice and bob, password pw)
Exits 0 and prints OK on success; prints what failed otherwise.
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
N = 1000
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING,
                    format="%(levelname)s %(message)s")
SID = "{urn:xmpp:sid:0}stanza-id"


class Client(ClientXMPP):
    def __init__(self, user):
        super().__init__("%s@%s/py" % (user, DOMAIN), "pw")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0059")
        self.register_plugin("xep_0313")
        self.started = asyncio.get_event_loop().create_future()
        self.live = {}  # body → stanza-id by our bare JID
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _):
        self.send_presence()
        self.started.set_result(True)

    def on_message(self, msg):
        if msg["type"] != "chat" or not msg["body"]:
            return
        for sid in msg.xml.findall(SID):
            if sid.get("by") == self.boundjid.bare:
                self.live[msg["body"]] = sid.get("id")


async def main():
    alice, bob = Client("alice"), Client("bob")
    for c in (alice, bob):
        c.connect((HOST, PORT))
        await asyncio.wait_for(c.started, 30)
    for i in range(N):
        alice.send_message(mto=bob.boundjid.bare, mbody="msg %04d" % i, mtype="chat")
    for _ in range(600):
        if len(bob.live) == N:
            break
        await asyncio.sleep(0.1)
    if len(bob.live) != N:
        print("bob got %d live messages with his stanza-id, want %d" % (len(bob.live), N))
        sys.exit(1)

    seen = {}
    order = []
    async for res in bob["xep_0313"].iterate(with_jid=alice.boundjid.bare, reverse=True, rsm={"max": 50}):
        body = res["mam_result"]["forwarded"]["stanza"]["body"]
        rid = res["mam_result"]["id"]
        if body in seen:
            print("%r came twice (ids %s, %s)" % (body, seen[body], rid))
            sys.exit(1)
        seen[body] = rid
        order.append(body)
    problems = []
    if len(seen) != N:
        problems.append("paged through %d messages, want %d" % (len(seen), N))
    if order != sorted(order, reverse=True):
        problems.append("not newest first")
    for body, sid in bob.live.items():
        if seen.get(body) != sid:
            problems.append("%r: live stanza-id %s, archive id %s" % (body, sid, seen.get(body)))
            break
    for c in (alice, bob):
        c.disconnect()
        await c.disconnected
    if problems:
        print("; ".join(problems))
        sys.exit(1)
    print("OK %d messages, each once, ids match" % len(seen))


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 300))
