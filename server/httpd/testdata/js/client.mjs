// Drives a real JavaScript XMPP client against an Aviary node for the Go
// tests in server/httpd (js_test.go).
//
//   node client.mjs LIB TRANSPORT URL JID PASSWORD PEER
//
// LIB is "xmppjs" (@xmpp/client) or "stanza"; TRANSPORT is "websocket" or
// "bosh". The client logs in, sends PEER a chat message
// "hello from LIB-TRANSPORT", waits for "reply to LIB-TRANSPORT" from PEER,
// prints "OK" and exits 0. Any failure, or 20 s without the reply, exits 1.
import fs from "node:fs";
import WS from "ws";

if (typeof globalThis.WebSocket === "undefined") {
  globalThis.WebSocket = WS; // Node 20 has no global WebSocket
}

const [lib, transport, url, jid, password, peer] = process.argv.slice(2);
const tag = `${lib}-${transport}`;
const [local, rest] = jid.split("@");
const domain = rest.split("/")[0];

function done(code, msg) {
  fs.writeSync(1, msg + "\n");
  process.exit(code);
}
setTimeout(() => done(1, `FAIL ${tag}: timeout`), 20000).unref?.();

if (lib === "xmppjs") {
  const { client, xml } = await import("@xmpp/client");
  if (transport !== "websocket") done(1, "FAIL @xmpp/client speaks WebSocket only here");
  const xmpp = client({ service: url, domain, resource: tag, username: local, password });
  xmpp.on("error", (err) => done(1, `FAIL ${tag}: ${err && (err.stack || err)}`));
  if (process.env.XMPP_DEBUG) {
    xmpp.on("element", (s) => fs.writeSync(2, "IN  " + s.toString() + "\n"));
    xmpp.on("send", (s) => fs.writeSync(2, "OUT " + s.toString() + "\n"));
  }
  xmpp.on("stanza", (st) => {
    if (st.is("message") && st.getChildText("body") === `reply to ${tag}`) {
      xmpp.stop().finally(() => done(0, "OK"));
    }
  });
  xmpp.on("online", async () => {
    // No initial presence: @xmpp/client 0.14 sends it before <enable/> and
    // then counts its reflection, which arrives before <enabled/>, in the
    // XEP-0198 'h' (a client race); the server rightly ends the stream with
    // handled-count-too-high. A message to a full JID needs no presence.
    await xmpp.send(xml("message", { to: peer, type: "chat" }, xml("body", {}, `hello from ${tag}`)));
  });
  await xmpp.start();
} else if (lib === "stanza") {
  const XMPP = await import("stanza");
  const createClient = XMPP.createClient || XMPP.default.createClient;
  const transports = transport === "bosh" ? { bosh: url, websocket: false } : { websocket: url, bosh: false };
  const c = createClient({ jid: `${local}@${domain}`, password, resource: tag, transports });
  c.on("session:started", () => {
    c.sendPresence();
    c.sendMessage({ to: peer, type: "chat", body: `hello from ${tag}` });
  });
  c.on("message", (m) => {
    if (m.body === `reply to ${tag}`) {
      c.disconnect();
      done(0, "OK");
    }
  });
  c.on("auth:failed", () => done(1, `FAIL ${tag}: auth failed`));
  c.on("stream:error", (e) => done(1, `FAIL ${tag}: stream error ${JSON.stringify(e)}`));
  c.connect();
} else {
  done(1, `FAIL unknown lib ${lib}`);
}
