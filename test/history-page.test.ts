// The deployments page in a real headless browser (Debian's chromium, driven by puppeteer-core): the
// 401 path, the table as a desktop and a phone render it, and screenshots checked by their pixels.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import puppeteer, { type Browser } from "puppeteer-core";
import { finishJob, publishJob } from "../spool/index.ts";
import { startTestApi, type TestApi } from "./helpers/api.ts";
import { fillHistory, makeRecord } from "./helpers/history.ts";
import { makeJob } from "./helpers/jobs.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";

const TOKEN = "history-token-0123456789abcdef-0123456789";
const SHOTS = process.env.SCREENSHOT_DIR ?? os.tmpdir();

/** How many distinct colours a PNG screenshot holds, decoded by the browser itself (a blank page has one). */
async function colours(browser: Browser, png: Uint8Array): Promise<number> {
  const page = await browser.newPage();
  try {
    const src = `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
    // runs in the page (the project's types have no DOM): decode, draw, count the colours
    const count = `(async () => {
      const img = new Image();
      img.src = ${JSON.stringify(src)};
      await img.decode();
      const ctx = new OffscreenCanvas(img.width, img.height).getContext("2d");
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, img.width, img.height).data;
      const seen = new Set();
      for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      return seen.size;
    })()`;
    return Number(await page.evaluate(count));
  } finally {
    await page.close();
  }
}

describe("deployments page in Chromium", () => {
  let s: TempSpool;
  let api: TestApi;
  let browser: Browser;
  let failedId: string;

  before(async () => {
    s = await tempSpool();
    await fillHistory(s.spool, 80, { stacks: ["app", "web"], failEvery: 5, newest: new Date(Date.now() - 60_000) });
    const job = makeJob({ repository: "acme/shop" });
    failedId = job.deliveryId;
    await finishJob(
      s.spool,
      makeRecord(new Date(), {
        jobId: job.deliveryId,
        job,
        outcome: "rolled_back",
        reason: "app_web: rollback_completed (update out of sequence)",
      }),
    );
    await publishJob(s.spool, makeJob());
    api = await startTestApi(s.root, { HISTORY_TOKEN: TOKEN });
    browser = await puppeteer.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
  });
  after(async () => {
    await browser?.close();
    await api?.close();
    await s?.cleanup();
  });

  it("asks for the token: 401 with a Basic challenge and no table", async () => {
    const page = await browser.newPage();
    try {
      // headless Chromium has no password prompt: cancel the challenge as a person pressing Cancel would
      const cdp = await page.createCDPSession();
      await cdp.send("Fetch.enable", { handleAuthRequests: true, patterns: [{ urlPattern: "*" }] });
      cdp.on("Fetch.requestPaused", (e) => void cdp.send("Fetch.continueRequest", { requestId: e.requestId }));
      let challenged = "";
      cdp.on("Fetch.authRequired", (e) => {
        challenged = e.authChallenge.scheme;
        void cdp.send("Fetch.continueWithAuth", { requestId: e.requestId, authChallengeResponse: { response: "CancelAuth" } });
      });
      const res = await page.goto(`${api.url}/deployments`);
      assert.equal(challenged.toLowerCase(), "basic");
      assert.equal(res?.status(), 401);
      assert.match(await page.$eval("body", (b) => b.textContent ?? ""), /needs the history token/);
      assert.match(res?.headers()["www-authenticate"] ?? "", /^Basic /);
      assert.equal(await page.$("table"), null);
    } finally {
      await page.close();
    }
  });

  it("renders the table with the token as the Basic password, newest first, linking commits and records", async () => {
    const page = await browser.newPage();
    try {
      await page.authenticate({ username: "operator", password: TOKEN });
      await page.setViewport({ width: 1280, height: 900 });
      const res = await page.goto(`${api.url}/deployments`);
      assert.equal(res?.status(), 200);
      const rows = await page.$$eval("tbody tr", (trs) =>
        trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent?.trim() ?? "")),
      );
      assert.equal(rows.length, 26, "the pending job and a page of 25 records");
      assert.equal(rows[0]?.[1], "queued");
      assert.equal(rows[1]?.[1], "rolled back");
      assert.match(rows[1]?.[7] ?? "", /rollback_completed/);
      const commitLink = await page.$eval("tbody tr:nth-child(2) td:nth-child(4) a", (a) => a.getAttribute("href"));
      assert.match(commitLink, /^https:\/\/github\.com\/acme\/shop\/commit\/[0-9a-f]{40}$/);
      const box = await page.$eval("table", (t) => t.getBoundingClientRect().toJSON() as { width: number; height: number });
      assert.ok(box.width > 900 && box.height > 26 * 20, `table ${box.width}x${box.height}`);
      const shot = await page.screenshot({ fullPage: false });
      await writeFile(path.join(SHOTS, "swarmhook-deployments.png"), shot);
      assert.ok((await colours(browser, shot)) > 8, "the screenshot shows a rendered table, not a blank page");

      // the filter is a plain GET form: no JavaScript needed
      await page.type("input[name=stack]", "web");
      await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
      assert.match(page.url(), /\/deployments\?stack=web$/);
      const stacks = await page.$$eval("tbody td[data-label=Stack]", (tds) => [...new Set(tds.map((td) => td.textContent))]);
      assert.deepEqual(stacks, ["web"]);
      await Promise.all([page.waitForNavigation(), page.click("a[rel=next]")]);
      assert.match(page.url(), /stack=web&before=/);
    } finally {
      await page.close();
    }
  });

  it("reads on a phone: no sideways scrolling, every cell labelled; one page per record", async () => {
    const page = await browser.newPage();
    try {
      await page.authenticate({ username: "", password: TOKEN });
      await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
      await page.setJavaScriptEnabled(false);
      assert.equal((await page.goto(`${api.url}/deployments`))?.status(), 200);
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"));
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
      const label = await page.$eval(
        "tbody td[data-label=Outcome]",
        (td) => td.ownerDocument.defaultView?.getComputedStyle(td, "::before").content,
      );
      assert.equal(label, '"Outcome: "');
      const shot = await page.screenshot();
      await writeFile(path.join(SHOTS, "swarmhook-deployments-phone.png"), shot);
      assert.ok((await colours(browser, shot)) > 8);

      await Promise.all([page.waitForNavigation(), page.click(`a[href="/deployments/${failedId}"]`)]);
      assert.equal(await page.$eval("h1", (h) => h.textContent), `Deployment ${failedId}`);
      assert.match(await page.$eval("dl", (d) => d.textContent ?? ""), /rolled back[\s\S]*acme\/shop[\s\S]*rollback_completed/);
    } finally {
      await page.close();
    }
  });
});
