// @xmpp/client (JavaScript) loses its TCP connection and comes back,
// resuming its session inside SASL2 (XEP-0198 <resume/> in <authenticate/>).
//
//   node xmppjs_resume.mjs xmpp://HOST:PORT DOMAIN USER PASSWORD
//
// Prints "online JID", "got one", then after the drop "resumed" and
// "got two" (sent while it was away), in either order, then OK. The first
// login asks for a FAST token, and the second uses it. JS_DIR names where
// node_modules lives.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { client, xml } = require("@xmpp/client");
const [service, domain, username, password] = process.argv.slice(2);
const say = (msg) => fs.writeSync(1, msg + "\n");
const done = (code, msg) => { say(msg); process.exit(code); };
setTimeout(() => done(1, "FAIL timeout"), 30000).unref?.();

const xmpp = client({ service, domain, username, password, resource: "js" });
xmpp.on("error", (err) => say("error " + (err && (err.message || err))));
// Stop once both the resumption and "two" are through: xmpp.js resends
// its unacknowledged stanzas before it emits "resumed", and stopping in
// between makes that send throw. With a FAST token (XEP-0484) the login
// takes one round trip, and "two" comes in the same read as <success/>.
let resumed = false, gotTwo = false;
const finish = () => { if (resumed && gotTwo) xmpp.stop().finally(() => done(0, "OK")); };
xmpp.streamManagement.on("resumed", () => { say("resumed"); resumed = true; finish(); });
let first = true;
xmpp.on("online", async (address) => {
  if (!first) return;
  first = false;
  say("online " + address.toString());
  await xmpp.send(xml("presence"));
});
xmpp.on("stanza", (st) => {
  if (!st.is("message")) return;
  const body = st.getChildText("body");
  if (body === "one") {
    say("got one");
    // Acknowledge it, then drop the connection without closing the stream,
    // as a phone losing its network does; @xmpp/reconnect comes back.
    xmpp.send(xml("a", { xmlns: "urn:xmpp:sm:3", h: String(xmpp.streamManagement.inbound) }))
      .then(() => setTimeout(() => { xmpp.socket.socket.destroy(); say("dropped"); }, 100));
  } else if (body === "two") {
    say("got two");
    gotTwo = true;
    finish();
  }
});
await xmpp.start();
