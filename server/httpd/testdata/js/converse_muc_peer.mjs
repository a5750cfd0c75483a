// One Converse.js page in headless Chromium in a groupchat with a client
// of another kind: the page opens the room (creating it as an instant
// room if it does not exist) and prints "ENTERED" on stdout, so the test
// starts the other client only then; once that client's nick is in the
// room, the page types SAY and waits until the room shows both SAY and
// EXPECT (what the other client writes). A screenshot is taken last.
//
//   node converse_muc_peer.mjs PAGE_URL PEER_NICK SAY EXPECT SHOT
//
// Prints "OK" and exits 0 on success. CHROMIUM overrides the browser path.
import fs from "node:fs";
import { launch, log, open, roomState, shows, type, wait } from "./muc_page.mjs";

const [pageURL, peerNick, say, expect, shot] = process.argv.slice(2);
const browser = await launch();
let code = 1;
let page;
try {
  page = await open(browser, pageURL, "page");
  fs.writeSync(1, "ENTERED\n");
  await page.waitForFunction((nick) => window.__room.getOccupant(nick)?.get("presence") === "online", peerNick, wait);
  log("page: " + peerNick + " is in the room");
  await type(page, say);
  await shows(page, [say, expect]);
  await page.screenshot({ path: shot });
  fs.writeSync(1, "OK\n");
  code = 0;
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
  if (page) log("page state: " + JSON.stringify(await roomState(page)));
} finally {
  await browser.close();
}
process.exit(code);
