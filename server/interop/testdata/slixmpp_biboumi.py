"""A slixmpp user joins an IRC channel through biboumi (an XEP-0114
component) and talks with an IRC user there.

usage: slixmpp_biboumi.py HOST PORT JID PASSWORD BIBOUMI IRC_HOST IRC_PORT CHANNEL NICK

It first points biboumi at the IRC server's plain port with biboumi's
per-server ad-hoc command "configure" on IRC_HOST@BIBOUMI (ports =
IRC_PORT, no TLS ports), then joins CHANNEL%IRC_HOST@BIBOUMI/NICK,
prints JOINED, says "hello from xmpp" in the channel and waits for
"hello from irc" from an IRC user. Prints OK (exit 0), or what failed
(exit 1).
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP

HOST, PORT, JID, PASSWORD, BIBOUMI, IRC_HOST, IRC_PORT, CHANNEL, NICK = sys.argv[1:10]
ROOM = "%s%%%s@%s" % (CHANNEL, IRC_HOST, BIBOUMI)
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING, format="%(levelname)s %(message)s")


class User(ClientXMPP):
    def __init__(self):
        super().__init__(JID, PASSWORD)
        # The test server has a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0050")
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.heard = loop.create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        # slixmpp 1.8.3 tries the -PLUS mechanisms with tls-unique first,
        # which a TLS 1.3 stream refuses, and goes on to the next one (see
        # slixmpp_receive.py): a refusal is reported, only a stream that
        # ends before the session starts fails.
        self.add_event_handler("failed_auth", lambda st: print(
            "slixmpp: a mechanism was refused: %s" % st["condition"], file=sys.stderr, flush=True))
        self.add_event_handler("disconnected", lambda _: self.started.done() or self.started.set_exception(
            RuntimeError("disconnected before the session started")))

    async def on_start(self, _):
        self.send_presence()
        self.started.set_result(True)

    def on_groupchat(self, msg):
        if msg["body"] == "hello from irc" and not self.heard.done():
            print("GOT %r from %s" % (msg["body"], msg["from"]), flush=True)
            self.heard.set_result(str(msg["from"]))

    async def configure_server(self):
        """Run biboumi's per-server "configure" command: plain port only."""
        server = "%s@%s" % (IRC_HOST, BIBOUMI)
        first = await self["xep_0050"].send_command(server, "configure")
        command = first["command"]
        form = command["form"]
        submit = self["xep_0004"].make_form(ftype="submit")
        found = set()
        for var, field in form.get_fields().items():
            if field["type"] == "fixed":
                continue
            label = (field["label"] or "").lower()
            value = field["value"]
            if var == "ports" or label == "ports":
                value, _ = [IRC_PORT], found.add("ports")
            elif var == "tls_ports" or label == "tls ports":
                value, _ = [], found.add("tls_ports")
            submit.add_field(var=var, ftype=field["type"], value=value)
        if found != {"ports", "tls_ports"}:
            raise RuntimeError("no ports fields in biboumi's form: %s" % form)
        iq = self.make_iq_set(ito=server)
        iq["command"]["node"] = "configure"
        iq["command"]["sessionid"] = command["sessionid"]
        iq["command"]["action"] = "complete"
        iq["command"].append(submit)
        await iq.send(timeout=20)


async def main():
    u = User()
    u.connect((HOST, int(PORT)))
    await asyncio.wait_for(u.started, 30)
    await u.configure_server()
    await u["xep_0045"].join_muc_wait(ROOM, NICK, maxchars=0, timeout=60)
    print("JOINED", flush=True)
    u.send_message(mto=ROOM, mbody="hello from xmpp", mtype="groupchat")
    sender = await asyncio.wait_for(u.heard, 60)
    u.disconnect()
    await u.disconnected
    print("OK from %s" % sender, flush=True)


try:
    asyncio.run(main())
except Exception as e:  # noqa: BLE001 - report whatever failed
    print("FAILED: %r" % (e,), flush=True)
    sys.exit(1)
