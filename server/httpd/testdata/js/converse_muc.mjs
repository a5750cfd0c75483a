// Drives two Converse.js pages in headless Chromium (Debian's, through
// playwright-core) in one groupchat: the owner's page opens the room,
// which creates it (Converse accepts the default configuration: an
// instant room); the guest's page joins it; each types a message in the
// room's text area and both pages show both; then the owner types
// "/kick <guest nick> <reason>" and the guest's page must say it was
// kicked. Screenshots of both pages are taken after the kick.
//
//   node converse_muc.mjs OWNER_PAGE_URL GUEST_PAGE_URL GUEST_NICK OWNER_SHOT GUEST_SHOT
//
// Prints "OK" and exits 0 on success. CHROMIUM overrides the browser path.
import fs from "node:fs";
import { launch, log, open as openPage, shows, type, wait } from "./muc_page.mjs";

const [ownerURL, guestURL, guestNick, ownerShot, guestShot] = process.argv.slice(2);
const browser = await launch();
const open = (url, who) => openPage(browser, url, who);

let code = 1;
const pages = {};
try {
  const owner = (pages.owner = await open(ownerURL, "owner"));
  const guest = (pages.guest = await open(guestURL, "guest"));
  // Converse registers each user's nickname with the room once entered
  // (XEP-0045 §7.10, its default auto_register_muc_nickname), which makes
  // the guest a member; wait for the owner's page to see that, so the
  // kick below always meets a member rather than racing the registration.
  await owner.waitForFunction((nick) => window.__room.getOccupant(nick)?.get("affiliation") === "member", guestNick, wait);
  await type(owner, "Welcome to the room");
  await type(guest, "Thanks, glad to be here");
  await shows(owner, ["Welcome to the room", "Thanks, glad to be here"]);
  await shows(guest, ["Welcome to the room", "Thanks, glad to be here"]);
  log("both pages show both messages; kicking the guest");

  await type(owner, "/kick " + guestNick + " Testing the kick");
  // The guest's page replaces the room with the reason it is no longer in it.
  await guest.waitForFunction(
    () => window.__room.session.get("connection_status") === converse.ROOMSTATUS.DISCONNECTED &&
      /kicked from this groupchat/.test(document.querySelector("converse-muc")?.textContent || ""),
    null,
    wait,
  );
  log("guest page: " + (await guest.evaluate(() => document.querySelector("converse-muc").innerText.replace(/\s+/g, " "))));
  // The owner's page says the guest was kicked out and has it offline
  // with no role (a member stays listed, offline, among the participants).
  await owner.waitForFunction(
    (nick) => {
      const o = window.__room.getOccupant(nick);
      return o?.get("presence") === "offline" && o.get("role") === "none" &&
        /kicked out by/.test(document.querySelector("converse-muc .chat-content")?.textContent || "");
    },
    guestNick,
    wait,
  );
  await owner.screenshot({ path: ownerShot });
  await guest.screenshot({ path: guestShot });
  fs.writeSync(1, "OK\n");
  code = 0;
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
  for (const [who, page] of Object.entries(pages)) {
    const state = await page.evaluate((nick) => ({
      status: window.__room?.session.get("connection_status"),
      occupants: window.__room?.occupants.map((o) => [o.get("nick"), o.get("presence"), o.get("role"), o.get("affiliation")]),
      guest: !!window.__room?.getOccupant(nick),
      listed: Array.from(document.querySelectorAll("converse-muc .occupant-nick")).map((e) => e.textContent.trim()),
      text: document.querySelector("converse-muc")?.innerText.replace(/\s+/g, " "),
    }), guestNick).catch((err) => String(err));
    log(who + " state: " + JSON.stringify(state));
  }
} finally {
  await browser.close();
}
process.exit(code);
