// Loads the test page in headless Chromium (Debian's, through
// playwright-core) and waits for the page to report its result.
//
//   node browser.mjs PAGE_URL
//
// Prints "OK" and exits 0 when the page sets window.__result to "OK".
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
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
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
} finally {
  await browser.close();
}
process.exit(code);
