// Watching a deploy happen, on the real one-node swarm: the progress the watcher publishes in
// state/, `swarmhook follow` (the compiled CLI, piped and under tmux), /api/deployments/<id> and the
// deployment page of a running job in Chromium (it refreshes itself; its CSP is unchanged).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { execa } from "execa";
import puppeteer from "puppeteer-core";
import { ProgressSchema, openSpool, readProgressOf } from "../spool/index.ts";
import { startTestApi } from "./helpers/api.ts";
import { publish, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { ROOT, spawnDist } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { uniqueStack, waitFor } from "./helpers/swarm.ts";

const TOKEN = "history-token-for-follow-0123456789abcdef";

describe("following a deploy", () => {
  it("follow (piped: a line per change; in tmux: redrawn in place), the API's progress and the page of a running job; exit 0 on success, 1 on a rollback", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [v1, v2, broken] = [randomSha(), randomSha(), randomSha()];
    await Promise.all([buildWebImage(v1), buildWebImage(v2), buildWebImage(broken, { crash: true })]);
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    onEnd(t, () => agent.stop());
    const api = await startTestApi(s.root, { HISTORY_TOKEN: TOKEN });
    onEnd(t, () => api.close());
    const first = await waitForRecord(s.root, await publish(s.root, v1));
    assert.equal(first.outcome, "success", first.reason);

    // v2: followed piped and in tmux from the moment it is queued
    const id = await publish(s.root, v2);
    const piped = spawnDist("bin/swarmhook.js", ["follow", id, "--spool", s.root], {});
    const session = `follow-${stack}`;
    await execa("tmux", [
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "120",
      "-y",
      "20",
      `node ${ROOT}/dist/bin/swarmhook.js follow ${id} --spool ${s.root}; echo EXIT=$?; sleep 60`,
    ]);
    onEnd(t, () => execa("tmux", ["kill-session", "-t", session], { reject: false }).then(() => undefined));
    const screens: string[] = [];
    const capture = async () => (await execa("tmux", ["capture-pane", "-p", "-t", session])).stdout;
    // the terminal, sampled until the deploy ends (follow polls every 500 ms: a glance at one moment can miss it)
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        screens.push(await capture().catch(() => ""));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    onEnd(t, () => void (sampling = false));

    // while it runs: the progress in state/, in the API, on the page
    const progress = await waitFor(
      "progress of the running deploy",
      async () => {
        const p = await readProgressOf(openSpool(s.root), id);
        return p && p.services.length === 1 && p.services[0]!.updated < 2 ? p : undefined;
      },
      60_000,
      100,
    );
    assert.ok(ProgressSchema.safeParse(progress).success);
    assert.deepEqual([progress.stack, progress.sha, progress.services[0]?.name, progress.services[0]?.desired], [stack, v2, "web", 2]);
    const json = (await (await fetch(`${api.url}/api/deployments/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      deployment: { status: string };
      progress: { phase: string; services: { name: string }[] } | null;
    };
    assert.equal(json.deployment.status, "claimed");
    assert.equal(json.progress?.services[0]?.name, "web");
    const browser = await puppeteer.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    onEnd(t, () => browser.close());
    const page = await browser.newPage();
    await page.authenticate({ username: "operator", password: TOKEN });
    let loads = 0;
    page.on("load", () => void (loads += 1));
    const res = await page.goto(`${api.url}/deployments/${id}`);
    assert.equal(
      res?.headers()["content-security-policy"],
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    const text = await page.$eval("body", (b) => b.textContent ?? "");
    assert.match(text, /In progress: (deploying|verifying|checking health)/);
    assert.match(text, /web\s*\d\/2\s*(pulling|starting|running|updating)/);
    assert.equal(await page.$eval('meta[http-equiv="refresh"]', (m) => m.getAttribute("content")), "3");
    await waitFor("the page refreshed itself", async () => (loads >= 2 ? true : undefined), 15_000, 200);

    const r2 = await waitForRecord(s.root, id);
    sampling = false;
    await sampler;
    assert.equal(r2.outcome, "success", r2.reason);
    assert.equal(await piped.exited, 0, piped.err());
    const lines = piped.out().trim().split("\n");
    // node starts in about as long as the watcher takes to claim: the first line is queued, claimed or the first progress
    assert.match(lines[0] ?? "", new RegExp(`^\\d\\d:\\d\\d:\\d\\d ${id} · (${stack} · )?[0-9a-f]{12} · (queued|claimed|deploying)`));
    assert.ok(
      lines.some((l) => / · deploying · /.test(l)),
      piped.out(),
    );
    assert.ok(
      lines.some((l) => /^\s+web\s+[01]\/2 new\s+\S/.test(l)),
      `the rollout's steps: ${piped.out()}`,
    );
    assert.match(lines.at(-1) ?? "", / · success$/);
    // piped: a block only when something changed (not for the clock alone)
    const blocks = piped
      .out()
      .split(/^\d\d:\d\d:\d\d /m)
      .filter(Boolean)
      .map((b) => b.replace(/ · \d+ s\n/, "\n"));
    for (let i = 1; i < blocks.length; i++) assert.notEqual(blocks[i], blocks[i - 1], piped.out());
    await waitFor("tmux: follow exited 0", async () => ((await capture()).includes("EXIT=0") ? true : undefined), 20_000, 200);
    const screen = await capture();
    assert.equal(screen.split("\n").filter((l) => l.startsWith(`${id} · `)).length, 1, `redrawn in place, not scrolled:\n${screen}`);
    assert.match(screen, new RegExp(`${id} · ${stack} · ${v2.slice(0, 12)} · success`));
    assert.ok(
      screens.some((x) => / · (verifying|deploying) · /.test(x)),
      "the terminal showed the deploy while it ran",
    );
    await page.reload();
    assert.equal(await page.$('meta[http-equiv="refresh"]'), null, "a finished job's page does not refresh");
    assert.equal(await readProgressOf(openSpool(s.root), id), null, "the progress is removed when the deploy ends");

    // a crashing image: Swarm rolls it back; follow exits 1 with the reason; on a finished job it answers at once
    const bad = await publish(s.root, broken);
    const f = spawnDist("bin/swarmhook.js", ["follow", "--stack", stack, "--spool", s.root], {});
    assert.equal(await f.exited, 1, f.out() + f.err());
    assert.match(f.out(), /· rolled_back\n {2}.+/);
    const again = spawnDist("bin/swarmhook.js", ["follow", bad, "--spool", s.root], {});
    assert.equal(await again.exited, 1);
    assert.equal(again.out().trim().split("\n").length, 2, "the outcome and its reason, at once");
    const none = spawnDist("bin/swarmhook.js", ["follow", "no-such-job", "--spool", s.root], {});
    assert.equal(await none.exited, 2);
    assert.match(none.err(), /no job no-such-job in the spool/);
  });
});
