"""What the interop client scripts share: debug logs when AVIARY_TEST_LOG
is set, a check that fails with what it got and wanted, an aioxmpp client
of the test server (STARTTLS, its self-signed certificate accepted), and
the run that prints OK or FAIL: and exits 0 or 1.

The scripts import it from their own directory (Python puts the script's
directory first on sys.path).
"""
import asyncio
import logging
import os
import sys

logging.basicConfig(level=logging.DEBUG if os.environ.get("AVIARY_TEST_LOG") else logging.WARNING,
                    format="%(levelname)s %(name)s %(message)s")


class Fail(Exception):
    pass


def check(what, got, want):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def aioxmpp_client(jid, password, host, port):
    """A PresenceManagedClient for jid (a string) at host:port."""
    import aioxmpp
    import aioxmpp.connector
    security = aioxmpp.make_security_layer(password, no_verify=True)
    return aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid), security,
        override_peer=[(host, port, aioxmpp.connector.STARTTLSConnector())],
    )


def run(main, timeout=60):
    """Runs the coroutine function main, prints OK when it returns and
    FAIL: with the reason when a check fails, and exits accordingly."""
    async def wrapped():
        try:
            await asyncio.wait_for(main(), timeout)
        except Fail as e:
            print("FAIL:", e, flush=True)
            return 1
        print("OK", flush=True)
        return 0
    sys.exit(asyncio.run(wrapped()))
