"""A slixmpp client logs in, says it is available, prints READY and waits
until it has received a chat or normal message with each of the given
bodies.

usage: slixmpp_receive.py HOST PORT JID PASSWORD BODY...
Prints READY once online, then OK when every body arrived (exit 0), or
what failed (exit 1).
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP

HOST, PORT, JID, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
WANT = set(sys.argv[5:])
logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING, format="%(levelname)s %(message)s")


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


class Receiver(ClientXMPP):
    def __init__(self):
        super().__init__(JID, PASSWORD)
        # The test server has a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.started = asyncio.get_event_loop().create_future()
        self.got = asyncio.get_event_loop().create_future()
        self.seen = {}
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        report_refusals(self, lambda why: self.started.done() or self.started.set_exception(RuntimeError(why)))

    async def on_start(self, _):
        self.send_presence()
        await self.get_roster()
        self.started.set_result(True)

    def on_message(self, msg):
        body = msg["body"]
        if msg["type"] in ("chat", "normal") and body in WANT:
            self.seen[body] = str(msg["from"])
            print("GOT %r from %s" % (body, msg["from"]), flush=True)
            if set(self.seen) == WANT and not self.got.done():
                self.got.set_result(True)


async def main():
    r = Receiver()
    r.connect((HOST, PORT))
    await asyncio.wait_for(r.started, 30)
    print("READY", flush=True)
    await asyncio.wait_for(r.got, 60)
    r.disconnect()
    await r.disconnected
    print("OK", flush=True)


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except Exception as e:  # the Go test shows this
    print("FAILED: %r" % (e,), flush=True)
    sys.exit(1)
