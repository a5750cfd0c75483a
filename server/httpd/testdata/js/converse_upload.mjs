// Drives two Converse.js pages in headless Chromium (Debian's, through
// playwright-core): the receiver's page opens a chat with the sender; the
// sender's page draws a PNG and sends it with Converse's own file upload
// (XEP-0363: it finds the upload service in disco, asks for a slot, PUTs
// the file to the node's HTTP listener from another origin, so through
// CORS, and sends the GET URL). The receiver's page must show the image,
// loaded; it is screenshotted.
//
//   node converse_upload.mjs SENDER_PAGE_URL RECEIVER_PAGE_URL SCREENSHOT
//
// Prints "OK <GET URL>" and exits 0 on success. CHROMIUM overrides the
// browser path.
import fs from "node:fs";
import { chromium } from "playwright-core";

const [senderURL, receiverURL, shot] = process.argv.slice(2);
const log = (s) => fs.writeSync(2, s + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

async function open(url, who) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.on("console", (m) => log(who + " console: " + m.text()));
  page.on("pageerror", (e) => log(who + " pageerror: " + e));
  await page.goto(url);
  await page.waitForFunction(() => window.__ready, null, { timeout: 60000 });
  return page;
}

let code = 1;
try {
  const receiver = await open(receiverURL, "receiver");
  const sender = await open(senderURL, "sender");
  await sender.evaluate(async () => {
    const canvas = document.createElement("canvas");
    canvas.width = 120;
    canvas.height = 80;
    const g = canvas.getContext("2d");
    g.fillStyle = "#2a7ae2";
    g.fillRect(0, 0, 120, 80);
    g.fillStyle = "#fff";
    g.font = "20px sans-serif";
    g.fillText("Aviary", 25, 48);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    await window.__chat.sendFiles([new File([blob], "aviary.png", { type: "image/png" })]);
  });
  // The sender's message carries the GET URL once the PUT succeeded.
  const getURL = await (await sender.waitForFunction(
    () => window.__chat.messages.find((m) => m.get("oob_url"))?.get("oob_url"),
    null,
    { timeout: 60000 },
  )).jsonValue();
  log("uploaded: " + getURL);
  // The receiver's chat shows it as an image, loaded from the node.
  await receiver.waitForFunction(
    (url) => Array.from(document.querySelectorAll("img")).some((i) => i.src === url && i.complete && i.naturalWidth === 120),
    getURL,
    { timeout: 60000 },
  );
  await receiver.screenshot({ path: shot });
  fs.writeSync(1, "OK " + getURL + "\n");
  code = 0;
} catch (e) {
  fs.writeSync(1, "FAIL " + e + "\n");
} finally {
  await browser.close();
}
process.exit(code);
