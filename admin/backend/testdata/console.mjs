// Drives the admin console in headless Chromium like an operator would:
// sign in, look at every page, switch clustering off and on, create an
// account, upload two versions of a plugin and roll the second through the
// cluster, watching its progress. Screenshots go to OUT_DIR.
//
//   node console.mjs BASE_URL USER PASSWORD WASM_V1 WASM_V2 OUT_DIR
//
// JS_DIR names the directory whose node_modules holds playwright-core.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.JS_DIR, "package.json"));
const { chromium } = require("playwright-core");
const [base, user, password, v1, v2, out] = process.argv.slice(2);
const log = (s) => fs.writeSync(1, s + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"],
});
let code = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 820 } });
  page.on("dialog", (d) => d.accept()); // the confirmations
  const shot = (name) => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
  const expectText = async (sel, re, timeout = 30000) => {
    await page.waitForFunction(([s, r]) => {
      const el = document.querySelector(s);
      return el && new RegExp(r).test(el.textContent);
    }, [sel, re], { timeout });
  };

  await page.goto(base + "/admin/");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", "wrong password");
  await page.click("form.login button");
  await expectText(".flash", "wrong username or password");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("form.login button");
  await expectText("h1", "Overview");
  log("nodes " + (await page.textContent("#nodes-count")).trim());
  await shot("overview");

  await page.goto(base + "/admin/cluster");
  await expectText("#switch-state", "enabled");
  await page.click("#switch");
  await expectText("#switch-state", "disabled");
  log("switch disabled");
  await shot("cluster-disabled");
  await page.click("#switch");
  await expectText("#switch-state", "enabled");
  log("switch enabled");
  await shot("cluster");

  await page.goto(base + "/admin/users");
  await page.fill("form input[name=username]", "carol");
  await page.fill("form input[name=password]", "carol-secret");
  await page.click("#create-user");
  await expectText(".flash", "Created carol");
  log("user created");
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
  log("uploaded");
  await page.click("button.upgrade[data-version='2.0.0']");
  await expectText(".flash", "Rolling upgrade of wordfilter to 2.0.0 started");
  // The rollout compiles the new WebAssembly module first: on a loaded
  // two-core machine (a clean-clone CI beside a crash measurement) that
  // alone took more than the 30 s the other steps get.
  await expectText("#upgrade-state", "^done$", 90000);
  log("upgrade " + (await page.textContent("#upgrade-steps")).replace(/\s+/g, " ").trim());
  await shot("plugins");
  await page.goto(base + "/admin/");
  await shot("overview-after");
  log("OK");
  code = 0;
} catch (e) {
  log("FAIL " + e);
} finally {
  await browser.close();
}
process.exit(code);
