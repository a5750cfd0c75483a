// Drives node 1's admin console of a three-node cluster in headless
// Chromium: sign in, see three nodes, switch clustering off and on and see
// the nodes leave and rejoin, upload two versions of a plugin (and see the
// same version refused), roll the first out, then roll the second through
// the cluster while a load runs, watching each node move to it, and delete
// the first (after seeing the enabled one refused). Screenshots go to
// OUT_DIR.
//
//   node cluster_console.mjs BASE_URL USER PASSWORD WASM_V1 WASM_V2 OUT_DIR
//
// At each "SYNC label" line it prints, it waits for "go" on stdin: the Go
// test checks every node through the API (disabled, enabled) or starts the
// load (v1) before the script goes on. JS_DIR names the directory whose
// node_modules holds playwright-core. The last line is "OK" on success.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { chromium } = require("playwright-core");
const [base, user, password, v1, v2, out] = process.argv.slice(2);
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
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  page.on("dialog", (d) => d.accept()); // the confirmations
  const shot = (name) => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
  const text = async (sel) => ((await page.textContent(sel)) || "").replace(/\s+/g, " ").trim();
  const expectText = async (sel, re, timeout = 30000) => {
    await page.waitForFunction(([s, r]) => {
      const el = document.querySelector(s);
      return el && new RegExp(r).test(el.textContent);
    }, [sel, re], { timeout });
  };
  // Reload url until sel's text matches re: the pages are server-rendered,
  // so a change on the nodes shows on the next load.
  const reloadUntil = async (url, sel, re, timeout = 30000) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      await page.goto(url);
      const el = await page.$(sel);
      const got = el ? (await el.textContent()).trim() : "(missing)";
      if (new RegExp(re).test(got)) return got;
      if (Date.now() > deadline) throw new Error(`${url}: ${sel} is "${got}", want ${re}`);
      await page.waitForTimeout(200); // a poll interval, not a synchronisation
    }
  };

  await page.goto(base + "/admin/");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("form.login button");
  await expectText("h1", "Overview");
  log("nodes " + (await reloadUntil(base + "/admin/", "#nodes-count", "^3$")));
  await shot("overview");

  // Clustering off: the switch flips, every node serves alone; node 1's
  // overview still shows the three, each alone, and says clustering is off.
  await page.goto(base + "/admin/cluster");
  await expectText("#switch-state", "enabled");
  await page.click("#switch");
  await expectText("#switch-state", "disabled");
  log("switch disabled");
  await sync("disabled");
  log("alone while disabled " + (await reloadUntil(base + "/admin/", "#nodes", "(alone[^]*){3}")));
  log("nodes while disabled " + (await text("#nodes-count")));
  await expectText("#cluster-off", "Clustering is off");
  await expectText(".cards", "Clustering\\s*disabled");
  await shot("overview-disabled");
  await page.goto(base + "/admin/cluster");
  await expectText("#switch-state", "disabled");
  await shot("cluster-disabled");

  // And on again: all three rejoin.
  await page.click("#switch");
  await expectText("#switch-state", "enabled");
  log("switch enabled");
  await sync("enabled");
  log("nodes after enable " + (await reloadUntil(base + "/admin/", "#nodes-count", "^3$")));
  await expectText(".cards", "Clustering\\s*enabled");
  await shot("overview-enabled");
  await page.goto(base + "/admin/cluster");
  await shot("cluster");

  await page.goto(base + "/admin/users");
  await shot("users");
  await page.goto(base + "/admin/sessions");
  await shot("sessions");
  await page.goto(base + "/admin/federation");
  await shot("federation");

  for (const [ver, file] of [["1.0.0", v1], ["2.0.0", v2]]) {
    await page.goto(base + "/admin/plugins");
    await page.fill("input[name=name]", "wordfilter");
    await page.fill("input[name=version]", ver);
    await page.setInputFiles("input[type=file]", file);
    await page.click("#upload");
    await expectText(".flash", "Uploaded wordfilter " + ver);
  }
  log("uploaded 1.0.0 and 2.0.0");
  // The same version again is refused, with the reason on the page.
  await page.fill("input[name=name]", "wordfilter");
  await page.fill("input[name=version]", "1.0.0");
  await page.setInputFiles("input[type=file]", v2);
  await page.click("#upload");
  await expectText(".flash.err", "already in the catalogue");
  log("upload again refused: " + (await text(".flash")));

  // Version 1 everywhere first (a rolling upgrade from nothing).
  await page.click("button.upgrade[data-version='1.0.0']");
  await expectText(".flash", "Rolling upgrade of wordfilter to 1.0.0 started");
  await expectText("#upgrade-state", "^done$");
  log("v1 " + (await text("#upgrade-steps")));
  await shot("plugins-v1");

  // The load starts now and runs until the test has checked the upgrade.
  await sync("v1");

  // Watch the upgrade through the API as the page does, but from outside
  // the page (which reloads when the form posts), recording every
  // distinct state of the steps.
  const seen = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      try {
        const u = await (await page.request.get(base + "/api/upgrade")).json();
        const s = (u.steps || []).map((x) => `${x.node}:${x.version || "-"}:${x.state}`).join(" ");
        const key = `${u.state} ${u.to} ${s}`;
        if (u.to === "2.0.0" && seen[seen.length - 1] !== key) seen.push(key);
      } catch (e) {
        // the next poll will tell
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  await page.click("button.upgrade[data-version='2.0.0']");
  await expectText(".flash", "Rolling upgrade of wordfilter to 2.0.0 started");
  await expectText("#upgrade", "→ 2\\.0\\.0"); // this upgrade, not the last one's result
  log("upgrade shown as " + (await text("#upgrade")));
  await shot("plugins-upgrading");
  await expectText("#upgrade-state", "^done$", 60000);
  // The page's own live view: every node on 2.0.0 and healthy.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#upgrade-steps tr")];
    return rows.length === 3 && rows.every((r) => /2\.0\.0\s*healthy/.test(r.textContent.replace(/\s+/g, " ")));
  }, null, { timeout: 30000 });
  log("upgrade " + (await text("#upgrade-steps")));
  watching = false;
  await watcher;
  for (const s of seen) log("watched " + s);
  await shot("plugins-upgraded");
  // Each node's row on the overview names the version it runs.
  log("nodes with 2.0.0 " + (await reloadUntil(base + "/admin/", "#nodes", "(wordfilter 2\\.0\\.0[\\s\\S]*){3}")).replace(/\s+/g, " "));
  await shot("overview-after");
  await page.goto(base + "/admin/sessions");
  await shot("sessions-load");

  // The catalogue page says what each node runs of each version.
  await page.goto(base + "/admin/plugins");
  log("nodes of 2.0.0 " + (await text("tr[data-version='2.0.0'] .node-states")));
  // Delete from the console: refused while enabled (the reason is shown),
  // done for 1.0.0, which no node runs any more.
  await page.click("button.delete[data-version='2.0.0']");
  await expectText("#plugin-error", "disable it first");
  log("delete refused: " + (await text("#plugin-error")));
  await shot("plugins-delete-refused");
  await page.click("button.delete[data-version='1.0.0']");
  await page.waitForFunction(() => !document.querySelector("button.delete[data-version='1.0.0']"), null, { timeout: 30000 });
  log("deleted 1.0.0");
  log("OK");
  code = 0;
} catch (e) {
  log("FAIL " + e);
} finally {
  await browser.close();
}
process.exit(code);
