// @xmpp/client (JavaScript) over TCP with STARTTLS against an Aviary node.
//
//   node xmppjs_tcp.mjs xmpp://HOST:PORT DOMAIN USER PASSWORD PEER_FULL_JID
//
// Logs in (SASL2 with Bind 2, stream management inline), reports whether
// stream management is on, fetches its roster, sends PEER "hello from xmpp.js", waits for
// "hello back" and prints OK. JS_DIR names where node_modules lives.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { client, xml } = require("@xmpp/client");
const [service, domain, username, password, peer] = process.argv.slice(2);
const done = (code, msg) => { fs.writeSync(1, msg + "\n"); process.exit(code); };
setTimeout(() => done(1, "FAIL timeout"), 30000).unref?.();

const xmpp = client({ service, domain, username, password, resource: "xmppjs" });
xmpp.on("error", (err) => done(1, "FAIL " + (err && (err.stack || err))));
xmpp.on("stanza", (st) => {
  if (st.is("message") && st.getChildText("body") === "hello back") {
    xmpp.stop().finally(() => done(0, "OK"));
  }
});
xmpp.on("online", async (address) => {
  fs.writeSync(1, "online " + address.toString() + "\n");
  const roster = await xmpp.iqCaller.get(xml("query", "jabber:iq:roster"));
  fs.writeSync(1, "roster " + roster.attrs.xmlns + "\n");
  // Stream management, enabled inside the SASL2 exchange (Bind 2 inline).
  // Read after the first round trip: xmpp.js emits "online" before it
  // looks at the <enabled/> inside <bound/>.
  const sm = xmpp.streamManagement;
  fs.writeSync(1, "sm " + (sm.enabled ? "enabled" : "off") + (sm.id ? " resumable" : "") + "\n");
  await xmpp.send(xml("message", { to: peer, type: "chat" }, xml("body", {}, "hello from xmpp.js")));
});
await xmpp.start();
