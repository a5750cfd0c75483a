"""Two slixmpp clients register in-band, subscribe to each other, see each
other's presence and exchange messages through an Aviary node, one of them
also while it says it is inactive (XEP-0352).

usage: slixmpp_chat.py HOST PORT DOMAIN
Exits 0 and prints OK on success; prints what failed otherwise.
"""
import asyncio
import logging
import ssl
import sys

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import os
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING, format="%(levelname)s %(message)s")


def insecure(xmpp):
    # The test server has a self-signed certificate.
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE


# slixmpp 1.8.3 (Debian 12) picks the -PLUS SCRAM mechanisms with
# tls-unique, which TLS 1.3 does not define, and then, for plain SCRAM,
# says it could bind but the server cannot (gs2 flag 'y'), which a server
# that offered -PLUS must refuse as a possible downgrade. It goes on to
# the next mechanism after each refusal and logs in with PLAIN, as it
# does against Prosody. So a refused mechanism is reported on stderr,
# and only a stream that ends before the session starts fails.
def report_refusals(xmpp, fail):
    xmpp.add_event_handler("failed_auth", lambda st: print(
        "slixmpp: a mechanism was refused: %s" % st["condition"], file=sys.stderr, flush=True))
    xmpp.add_event_handler("disconnected", lambda _: fail("disconnected before the session started"))


class Registrar(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        insecure(self)
        self.register_plugin("xep_0077")
        self["xep_0077"].force_registration = True
        # slixmpp 1.8 queues every stanza until a session exists, including
        # the pre-authentication registration IQ its own XEP-0077 plugin
        # sends; let this client send before the session starts.
        self._always_send_everything = True
        self.done = asyncio.get_event_loop().create_future()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        report_refusals(self, self.fail)

    def fail(self, why):
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))

    async def on_register(self, _):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send()
        except (IqError, IqTimeout) as e:
            self.fail("registration refused: %s" % e)
            self.disconnect()

    async def on_start(self, _):
        if not self.done.done():
            self.done.set_result(True)
        self.disconnect()


class Chat(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        insecure(self)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0085")  # chat states
        self.register_plugin("xep_0352")  # client state indication
        self.started = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.arrivals = []  # chat states and bodies, in the order they came
        self.add_event_handler("chatstate_composing", lambda _: self.arrivals.append("(composing)"))
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        report_refusals(self, lambda why: self.started.done() or self.started.set_exception(RuntimeError(why)))

    async def on_start(self, _):
        self.send_presence()
        await self.get_roster()
        self.started.set_result(True)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait(msg)
            if msg["body"]:
                self.arrivals.append(msg["body"])


async def until(what, cond, timeout=20):
    for _ in range(int(timeout / 0.1)):
        if cond():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


async def main():
    alice_jid, bob_jid = "alice@" + DOMAIN, "bob@" + DOMAIN
    for jid in (alice_jid, bob_jid):
        r = Registrar(jid + "/reg", "s3cret-" + jid.split("@")[0])
        r.connect((HOST, PORT))
        await asyncio.wait_for(r.done, 30)
        await r.disconnected

    alice = Chat(alice_jid + "/py", "s3cret-alice")
    bob = Chat(bob_jid + "/py", "s3cret-bob")
    for c in (alice, bob):
        c.connect((HOST, PORT))
    await asyncio.wait_for(asyncio.gather(alice.started, bob.started), 30)

    alice.send_presence_subscription(pto=bob_jid)
    await until("mutual subscription", lambda: alice.client_roster[bob_jid]["subscription"] == "both"
                and bob.client_roster[alice_jid]["subscription"] == "both")
    await until("bob's presence at alice", lambda: len(alice.client_roster[bob_jid].resources) > 0)
    await until("alice's presence at bob", lambda: len(bob.client_roster[alice_jid].resources) > 0)

    alice.send_message(mto=bob_jid, mbody="hello bob", mtype="chat")
    msg = await asyncio.wait_for(bob.inbox.get(), 20)
    assert msg["body"] == "hello bob", msg
    assert msg["from"].bare == alice_jid, msg["from"]
    bob.send_message(mto=msg["from"], mbody="hello alice", mtype="chat")
    msg = await asyncio.wait_for(alice.inbox.get(), 20)
    assert msg["body"] == "hello alice", msg

    # Bob's client goes to the background (XEP-0352): a chat state waits
    # for the next message with a body, and both arrive, in order.
    assert bob["xep_0352"].enabled, "slixmpp did not find CSI among the stream features"
    bob["xep_0352"].send_inactive()
    m = alice.make_message(mto=bob_jid, mtype="chat")
    m["chat_state"] = "composing"
    m.send()
    alice.send_message(mto=bob_jid, mbody="are you there", mtype="chat")
    msg = await asyncio.wait_for(bob.inbox.get(), 20)
    assert msg["body"] == "are you there", msg
    assert bob.arrivals[-2:] == ["(composing)", "are you there"], bob.arrivals
    bob["xep_0352"].send_active()

    # Bob goes away; alice sees him unavailable.
    bob.disconnect()
    await bob.disconnected
    await until("bob unavailable at alice", lambda: len(alice.client_roster[bob_jid].resources) == 0)
    alice.disconnect()
    await alice.disconnected
    print("OK")


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except Exception as e:  # the Go test shows this
    print("FAILED: %r" % (e,))
    sys.exit(1)
