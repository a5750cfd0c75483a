// @xmpp/client (JavaScript) logs in with a FAST token (XEP-0484) on its
// second connection.
//
//   node xmppjs_fast.mjs xmpp://HOST:PORT DOMAIN USER PASSWORD
//
// First connection: password (SCRAM over SASL2), asking for a token, which
// xmpp.js keeps through its fast.saveToken hook; prints "token MECH" and
// "online JID", then stops. Second connection: a new client with the same
// user-agent id, a wrong password and the saved token (fast.fetchToken):
// it can only get online with the token. Prints "authenticate MECH" for
// each <authenticate/> it sends, "online JID" and OK.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { client, xml } = require("@xmpp/client");
const [service, domain, username, password] = process.argv.slice(2);
const say = (msg) => fs.writeSync(1, msg + "\n");
const done = (code, msg) => { say(msg); process.exit(code); };
setTimeout(() => done(1, "FAIL timeout"), 30000).unref?.();

// A client keeps its user-agent id across connections: tokens are bound to it.
const userAgent = () => xml("user-agent", { id: "a5d0f1f6-3c1c-4a5e-9a6b-8f2f4b2e7c11" }, xml("software", {}, "xmpp.js"));
let saved = null;

function connect(pass) {
  const xmpp = client({ service, domain, username, password: pass, resource: "fast", userAgent: userAgent() });
  xmpp.fast.saveToken = async (t) => { saved = t; say("token " + t.mechanism); };
  xmpp.fast.fetchToken = async () => saved;
  xmpp.on("send", (el) => { if (el.is("authenticate", "urn:xmpp:sasl:2")) say("authenticate " + el.attrs.mechanism); });
  xmpp.on("error", (err) => done(1, "FAIL " + (err && (err.stack || err))));
  return xmpp;
}

const first = connect(password);
const online1 = new Promise((resolve) => first.on("online", resolve));
await first.start();
say("online " + (await online1).toString());
await first.stop();
if (!saved) done(1, "FAIL no token after the first login");

const second = connect("not-the-password");
const online2 = new Promise((resolve) => second.on("online", resolve));
await second.start();
say("online " + (await online2).toString());
await second.stop();
done(0, "OK");
