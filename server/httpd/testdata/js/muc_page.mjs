// Helpers for driving Converse.js groupchat pages (converse.html with
// room and nick) in headless Chromium through playwright-core, shared by
// converse_muc.mjs and converse_muc_peer.mjs.
import fs from "node:fs";
import { chromium } from "playwright-core";

export const log = (s) => fs.writeSync(2, s + "\n");
export const wait = { timeout: 60000 };

// launch starts Debian's Chromium (CHROMIUM overrides the path).
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

// open loads a page and waits until its groupchat is entered.
export async function open(browser, url, who) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.on("console", (m) => log(who + " console: " + m.text()));
  page.on("pageerror", (e) => log(who + " pageerror: " + e));
  await page.goto(url);
  await page.waitForFunction(() => window.__ready, null, wait);
  await page.waitForFunction(() => window.__room.session.get("connection_status") === converse.ROOMSTATUS.ENTERED, null, wait);
  log(who + " entered the groupchat");
  return page;
}

// type sends text as a person does: in the room's text area, with Enter.
export async function type(page, text) {
  const area = page.locator("converse-muc textarea.chat-textarea");
  await area.fill(text);
  await area.press("Enter");
}

// shows waits until the groupchat's visible messages include every body.
export async function shows(page, bodies) {
  await page.waitForFunction(
    (want) => {
      const text = Array.from(document.querySelectorAll("converse-muc .chat-msg__text")).map((e) => e.textContent.trim());
      return want.every((b) => text.includes(b));
    },
    bodies,
    wait,
  );
}

// roomState is what a page knows of its groupchat, for a failure report.
export function roomState(page) {
  return page.evaluate(() => ({
    status: window.__room?.session.get("connection_status"),
    occupants: window.__room?.occupants.map((o) => [o.get("nick"), o.get("presence"), o.get("role"), o.get("affiliation")]),
    messages: Array.from(document.querySelectorAll("converse-muc .chat-msg__text")).map((e) => e.textContent.trim()),
    text: document.querySelector("converse-muc")?.innerText.replace(/\s+/g, " "),
  })).catch((err) => String(err));
}
