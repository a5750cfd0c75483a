// Signs in to a node's console in headless Chromium, waits while the test
// restarts the node, and checks the console is still signed in; then goes
// through the pages an Openfire operator looks for (account details with
// lock and unlock, session details, live settings, logs, audit log, rooms,
// server information), taking a screenshot of each into OUT_DIR.
//
//   node console_restart.mjs BASE_URL USER PASSWORD OUT_DIR
//
// At "SYNC restart" it waits for "go" on stdin: the test has restarted the
// node on the same address by then. JS_DIR names the directory whose
// node_modules holds playwright-core. The last line is "OK" on success.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { chromium } = require("playwright-core");
const [base, user, password, out] = process.argv.slice(2);
const log = (s) => fs.writeSync(1, s + "\n");
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sync = async (label) => {
  log("SYNC " + label);
  const r = await lines.next();
  if (r.done || r.value.trim() !== "go") throw new Error(`test answered ${r.done ? "EOF" : r.value} at ${label}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"],
});
let code = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 820 } });
  page.on("dialog", (d) => d.accept()); // the confirmations
  const shot = (name) => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
  const expectText = async (sel, re) => {
    await page.waitForFunction(([s, r]) => {
      const el = document.querySelector(s);
      return el && new RegExp(r).test(el.textContent);
    }, [sel, re], { timeout: 30000 });
  };

  await page.goto(base + "/admin/");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("form.login button");
  await expectText("h1", "Overview");
  log("signed in");

  await sync("restart");
  // Same browser, same cookie: the restarted node knows the sign-in.
  await page.goto(base + "/admin/");
  if (page.url().includes("/admin/login")) throw new Error("signed out by the restart");
  await expectText("h1", "Overview");
  await expectText("#server-info", "Uptime|go1");
  log("still signed in after the restart");
  await shot("overview-after-restart");

  await page.goto(base + "/admin/users");
  await page.click("a[href='/admin/users/alice']");
  await expectText("h1", "alice@localhost");
  await expectText("#lock-state", "active");
  await expectText("#roster", "carol@example.net");
  await expectText("#offline", "see you at five");
  await shot("user");
  await page.click("#lock");
  await expectText(".flash", "Locked alice: logins are refused on every node, and its one session was closed");
  await expectText("#lock-state", "locked");
  log("locked");
  await shot("user-locked");
  await page.click("#unlock");
  await expectText(".flash", "Unlocked alice");
  await expectText("#lock-state", "active");
  log("unlocked");

  await page.goto(base + "/admin/sessions");
  await expectText("#sessions", "bob@localhost/desk");
  await expectText("#sessions", "gajim.org");
  await shot("sessions");
  await page.click("a[href^='/admin/sessions/bob']");
  await expectText("#session", "tcp");
  await expectText("#session", "Connected since");
  await shot("session");

  await page.goto(base + "/admin/settings");
  await page.selectOption("#log_level", "debug");
  await page.click("#apply");
  await expectText(".flash", "Changed log_level on 1 node");
  log("log level changed");
  await shot("settings");

  await page.goto(base + "/admin/logs?level=debug");
  await expectText("#log", "live settings changed");
  await shot("logs");
  await page.goto(base + "/admin/logs?level=warn");
  await shot("logs-warn");

  await page.goto(base + "/admin/audit");
  await expectText("#audit", "users.lock");
  await shot("audit");

  await page.goto(base + "/admin/rooms");
  await expectText("#rooms-off", "does not run");
  await shot("rooms");
  log("OK");
  code = 0;
} catch (e) {
  log("FAIL " + (e && e.stack ? e.stack : e));
} finally {
  await browser.close();
  process.exit(code);
}
