"""slixmpp's XEP-0045 plugin in a room another client is already in: it
joins ROOM as NICK, waits for the groupchat message EXPECT from the other
client, then writes SAY and waits for the room to reflect it.

usage: slixmpp_muc_peer.py HOST PORT JID PASSWORD ROOM NICK EXPECT SAY
Exits 0 and prints OK on success; prints what failed otherwise.
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP

HOST, PORT, JID, PASSWORD, ROOM, NICK, EXPECT, SAY = sys.argv[1:9]
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING,
                    format="%(levelname)s %(message)s")


class Client(ClientXMPP):
    def __init__(self):
        super().__init__(JID, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.started = asyncio.get_event_loop().create_future()
        self.got = []  # (nick, body) of groupchat messages
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", lambda m: self.got.append((m["mucnick"], m["body"])))

    async def on_start(self, _):
        self.send_presence()
        self.started.set_result(True)


async def until(what, cond, seconds=60):
    for _ in range(seconds * 20):
        if cond():
            return
        await asyncio.sleep(0.05)
    print("timed out waiting for " + what)
    sys.exit(1)


async def main():
    c = Client()
    c.connect((HOST, int(PORT)))
    await asyncio.wait_for(c.started, 30)
    pres, _, _, _ = await c["xep_0045"].join_muc_wait(ROOM, NICK, maxstanzas=0, timeout=30)
    codes = set(pres["muc"]["status_codes"])
    if 110 not in codes or 201 in codes:
        print("joined with status codes %s: want 110 and not 201 (the room existed)" % codes)
        sys.exit(1)
    await until("the other client's message", lambda: any(b == EXPECT for _, b in c.got))
    c.send_message(mto=ROOM, mbody=SAY, mtype="groupchat")
    await until("our message reflected", lambda: (NICK, SAY) in c.got)
    print("OK")
    c.disconnect()


asyncio.run(main())
