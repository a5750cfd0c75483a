// Drives Converse.js in headless Chromium (Debian's, through
// playwright-core): a first page logs in and sends a message to the peer,
// then waits for the peer's answer; then the page is loaded again in a
// fresh browser context (a reload with nothing cached: Converse's local
// storage is gone) and must show both messages, which can only come from
// the server's message archive (XEP-0313). Takes a screenshot of it.
//
//   node converse.mjs PAGE_URL SAY ANSWER SCREENSHOT
//
// Prints "OK" and exits 0 on success. CHROMIUM overrides the browser path.
import fs from "node:fs";
import { chromium } from "playwright-core";

const [pageURL, say, answer, shot] = process.argv.slice(2);
const log = (s) => fs.writeSync(2, s + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

async function open(url) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.on("console", (m) => log("console: " + m.text()));
  page.on("pageerror", (e) => log("pageerror: " + e));
  await page.goto(url);
  await page.waitForFunction(() => window.__ready, null, { timeout: 60000 });
  return { ctx, page };
}

// shows waits until the open chat's visible messages include every body.
async function shows(page, bodies) {
  await page.waitForFunction(
    (want) => {
      const text = Array.from(document.querySelectorAll(".chat-msg__text")).map((e) => e.textContent.trim());
      return want.every((b) => text.includes(b));
    },
    bodies,
    { timeout: 60000 },
  );
}

let code = 1;
try {
  const first = await open(pageURL + "&say=" + encodeURIComponent(say));
  await shows(first.page, [say, answer]);
  await first.ctx.close();
  log("first session saw both messages; loading the page again with nothing cached");

  const again = await open(pageURL);
  await shows(again.page, [say, answer]);
  const fromArchive = await again.page.evaluate(() =>
    window.__chat.messages.filter((m) => m.get("is_archived")).map((m) => m.get("body")),
  );
  log("archived messages in the reloaded chat: " + JSON.stringify(fromArchive));
  if (!fromArchive.includes(say) || !fromArchive.includes(answer)) {
    throw new Error("the reloaded chat's messages did not come from the archive: " + JSON.stringify(fromArchive));
  }
  await again.page.screenshot({ path: shot });
  fs.writeSync(1, "OK\n");
  code = 0;
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
} finally {
  await browser.close();
}
process.exit(code);
