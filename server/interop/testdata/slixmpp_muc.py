"""slixmpp's XEP-0045 plugin in an Aviary room: alice joins a room that
does not exist (it is created, locked, status 201), fetches the owner
configuration form and submits it; bob joins and gets alice's presence and
the subject; they exchange groupchat messages; alice sets the subject and
invites carol; bob leaves and alice sees him go.

usage: slixmpp_muc.py HOST PORT DOMAIN   (accounts alice, bob, carol; password pw)
Exits 0 and prints OK on success; prints what failed otherwise.
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ROOM = "lounge@conference." + DOMAIN
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING,
                    format="%(levelname)s %(message)s")


class Client(ClientXMPP):
    def __init__(self, user):
        super().__init__("%s@%s/py" % (user, DOMAIN), "pw")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.started = asyncio.get_event_loop().create_future()
        self.got = []       # (nick, body) of groupchat messages
        self.subjects = []  # subjects seen
        self.offline = []   # nicks seen leaving
        self.invites = []   # rooms invited to
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", lambda m: self.got.append((m["mucnick"], m["body"])))
        self.add_event_handler("groupchat_subject", lambda m: self.subjects.append(m["subject"]))
        self.add_event_handler("muc::%s::got_offline" % ROOM, lambda p: self.offline.append(p["muc"]["nick"]))
        self.add_event_handler("groupchat_invite", lambda m: self.invites.append(str(m["from"])))

    async def on_start(self, _):
        self.send_presence()
        self.started.set_result(True)


async def until(what, cond, seconds=15):
    for _ in range(seconds * 20):
        if cond():
            return
        await asyncio.sleep(0.05)
    print("timed out waiting for " + what)
    sys.exit(1)


async def main():
    alice, bob, carol = Client("alice"), Client("bob"), Client("carol")
    for c in (alice, bob, carol):
        c.connect((HOST, PORT))
        await asyncio.wait_for(c.started, 30)
    muc = alice["xep_0045"]
    pres, _, _, _ = await muc.join_muc_wait(ROOM, "alice", maxstanzas=0, timeout=15)
    codes = {s for s in pres["muc"]["status_codes"]}
    if 110 not in codes or 201 not in codes:
        print("alice's self-presence lacks 110 or 201: %s" % codes)
        sys.exit(1)
    form = await muc.get_room_config(ROOM)
    fields = form.get_fields()
    for want in ("muc#roomconfig_roomname", "muc#roomconfig_persistentroom", "muc#roomconfig_membersonly", "muc#roomconfig_whois"):
        if want not in fields:
            print("the configuration form lacks %s" % want)
            sys.exit(1)
    form["type"] = "submit"
    form.set_values({"muc#roomconfig_roomname": "The Lounge"})
    await muc.set_room_config(ROOM, form)

    info = await alice["xep_0030"].get_info(jid=ROOM)
    names = [i[3] for i in info["disco_info"]["identities"]]
    if "muc_open" not in info["disco_info"]["features"] or names != ["The Lounge"]:
        print("room disco#info: %s" % info)
        sys.exit(1)
    items = await alice["xep_0030"].get_items(jid="conference." + DOMAIN)
    if ROOM not in [str(i[0]) for i in items["disco_items"]["items"]]:
        print("the service does not list the room: %s" % items)
        sys.exit(1)

    _, subject, occupants, _ = await bob["xep_0045"].join_muc_wait(ROOM, "bob", maxstanzas=10, timeout=15)
    if "alice" not in [p["muc"]["nick"] for p in occupants]:
        print("bob did not get alice's presence: %s" % occupants)
        sys.exit(1)
    await until("alice to see bob", lambda: "bob" in muc.get_roster(ROOM))

    bob.send_message(mto=ROOM, mbody="hello from bob", mtype="groupchat")
    alice.send_message(mto=ROOM, mbody="hello from alice", mtype="groupchat")
    for c in (alice, bob):
        await until("both messages at " + c.boundjid.user,
                    lambda: ("bob", "hello from bob") in c.got and ("alice", "hello from alice") in c.got)

    muc.set_subject(ROOM, "Tea")
    await until("the subject at bob", lambda: "Tea" in bob.subjects)

    muc.invite(ROOM, carol.boundjid.bare, reason="join us")
    await until("carol's invitation", lambda: ROOM in carol.invites)

    bob["xep_0045"].leave_muc(ROOM, "bob")
    await until("bob leaving, at alice", lambda: "bob" in alice.offline)

    for c in (alice, bob, carol):
        c.disconnect()
        await c.disconnected
    print("OK created, configured, joined, chatted, subject, invitation, leave")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 120))
