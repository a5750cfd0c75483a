// Loads the test page in headless Chromium (Debian's, through
// playwright-core) and waits for the page to report its result.
//
//   node browser.mjs PAGE_URL
//
// Prints "OK" and exits 0 when the page sets window.__result to "OK".
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
// With CLOSE_ON_STDIN=1 it then waits for a line on its standard input,
// closes the page as a user closes a tab (no beforeunload, no goodbye
// from the page), prints "CLOSED" and exits.
import fs from "node:fs";
import { chromium } from "playwright-core";

const [pageURL] = process.argv.slice(2);
const log = (s) => fs.writeSync(2, s + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let code = 1;
try {
  const page = await browser.newPage();
  page.on("console", (m) => log("console: " + m.text()));
  page.on("pageerror", (e) => log("pageerror: " + e));
  await page.goto(pageURL);
  const handle = await page.waitForFunction(() => window.__result, null, { timeout: 45000 });
  const result = await handle.jsonValue();
  fs.writeSync(1, result + "\n");
  code = result === "OK" ? 0 : 1;
  if (code === 0 && process.env.CLOSE_ON_STDIN === "1") {
    await new Promise((resolve) => process.stdin.once("data", resolve));
    await page.close({ runBeforeUnload: false });
    fs.writeSync(1, "CLOSED\n");
  }
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
} finally {
  await browser.close();
}
process.exit(code);
