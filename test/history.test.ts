// The deployment history: the index in the spool, the JSON API and the HTML page behind the token,
// in-process (app.request) over real spool files; the page in a real browser is test/history-page.test.ts.
import assert from "node:assert/strict";
import { appendFile, readFile, rm, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { pino } from "pino";
import { createApp } from "../api/app.ts";
import { createClientAddress } from "../api/client-address.ts";
import { loadApiConfig } from "../api/config.ts";
import { finishJob, listRecords, pruneRecords, publishJob, rebuildIndex, writeReconcileState, type Spool } from "../spool/index.ts";
import { SECRET } from "./helpers/api.ts";
import { fillHistory, makeRecord } from "./helpers/history.ts";
import { makeJob } from "./helpers/jobs.ts";
import { useTempSpool } from "./helpers/spool.ts";

const TOKEN = "history-token-0123456789abcdef-0123456789";

function historyApp(spool: Spool, env: Record<string, string> = { HISTORY_TOKEN: TOKEN }) {
  const config = loadApiConfig({ SPOOL_DIR: spool.root, GITHUB_WEBHOOK_SECRET: SECRET, ...env });
  const logs: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => logs.push(l) });
  const app = createApp({ config, spool, log, visits: undefined, clientAddress: createClientAddress([]), version: "test" });
  const get = (path: string, auth: string | null = `Bearer ${TOKEN}`) =>
    app.request(path, { headers: auth ? { authorization: auth } : {} });
  return { app, get, logs };
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const json = async (r: Response) =>
  (await r.json()) as { deployments: { id: string; status: string; stack: string | null }[]; next: string | null };

describe("history access", () => {
  it("is 404 everywhere when HISTORY_TOKEN is unset", async (t) => {
    const s = await useTempSpool(t);
    const { get } = historyApp(s.spool, {});
    for (const p of ["/api/deployments", "/api/deployments/x", "/deployments", "/deployments/x"])
      assert.equal((await get(p)).status, 404, p);
  });

  it("refuses a short or placeholder HISTORY_TOKEN, naming it", () => {
    assert.throws(() => loadApiConfig({ SPOOL_DIR: "/x", GITHUB_WEBHOOK_SECRET: SECRET, HISTORY_TOKEN: "short" }), /HISTORY_TOKEN/);
  });

  it("answers 401 with a Basic challenge without the token, 200 with it as Bearer or as the Basic password; the token is never logged", async (t) => {
    const s = await useTempSpool(t);
    const { get, logs } = historyApp(s.spool);
    for (const auth of [null, `Bearer ${TOKEN}x`, basic("admin", "nope"), basic(TOKEN, ""), "Token abc", `Basic !!!`]) {
      for (const p of ["/api/deployments", "/deployments", "/deployments/abc"]) {
        const r = await get(p, auth);
        assert.equal(r.status, 401, `${p} ${auth}`);
        assert.match(r.headers.get("www-authenticate") ?? "", /^Basic realm="swarmhook deployments"/);
        assert.equal(r.headers.get("cache-control"), "no-store");
      }
    }
    assert.equal((await get("/api/deployments")).status, 200);
    assert.equal((await get("/api/deployments", basic("anyone", TOKEN))).status, 200);
    assert.equal((await get("/deployments", basic("", TOKEN))).status, 200);
    assert.ok(logs.some((l) => /history request rejected/.test(l)));
    assert.ok(!logs.some((l) => l.includes(TOKEN)));
  });
});

describe("history API", () => {
  it("lists pending jobs first, then records newest first; filters by stack; pages with next; 400 on a bad query", async (t) => {
    const s = await useTempSpool(t);
    const records = await fillHistory(s.spool, 60, { stacks: ["app", "web"], failEvery: 7 });
    const pending = makeJob();
    await publishJob(s.spool, pending);
    const { get } = historyApp(s.spool);

    const first = await json(await get("/api/deployments?limit=10"));
    assert.equal(first.deployments[0]?.id, pending.deliveryId);
    assert.equal(first.deployments[0]?.status, "queued");
    assert.deepEqual(
      first.deployments.slice(1).map((d) => d.id),
      records.slice(0, 10).map((r) => r.jobId),
    );
    const second = await json(await get(`/api/deployments?limit=10&before=${first.next}`));
    assert.deepEqual(
      second.deployments.map((d) => d.id),
      records.slice(10, 20).map((r) => r.jobId),
    );

    const web = await json(await get("/api/deployments?stack=web&limit=100"));
    assert.deepEqual(
      web.deployments.map((d) => `${d.id} ${d.status} ${d.stack}`),
      records.filter((r) => r.stack === "web").map((r) => `${r.jobId} ${r.outcome} web`),
    );
    assert.ok(web.deployments.some((d) => d.status === "failed"));
    assert.equal(web.next, null);

    for (const q of ["limit=0", "limit=101", "limit=x", "stack=../etc", "before=../../x", "extra=1"]) {
      const r = await get(`/api/deployments?${q}`);
      assert.equal(r.status, 400, q);
    }
  });

  it("shows a stack's drift, as the watcher's reconcile loop last found it, in the JSON and above the page's table; in sync, none", async (t) => {
    const s = await useTempSpool(t);
    await fillHistory(s.spool, 3, { stacks: ["app", "web"] });
    const since = "2026-12-03T10:00:00.000Z";
    const base = { checkedAt: "2026-12-03T10:05:00.000Z", queued: [], degraded: null, heal: null };
    await writeReconcileState(s.spool, {
      ...base,
      stack: "app",
      drift: { since, summary: "web: image <b>evil</b> → app:v1", services: [{ service: "web", change: "update", fields: ["image"] }] },
    });
    await writeReconcileState(s.spool, { ...base, stack: "web", drift: null });
    const { get } = historyApp(s.spool);
    const all = (await (await get("/api/deployments")).json()) as { drift: { stack: string; since: string; summary: string }[] };
    assert.deepEqual(
      all.drift.map((d) => [d.stack, d.since, d.summary]),
      [["app", since, "web: image <b>evil</b> → app:v1"]],
    );
    const onlyWeb = (await (await get("/api/deployments?stack=web")).json()) as { drift: unknown[] };
    assert.deepEqual(onlyWeb.drift, [], "a stack in sync shows none");
    const page = await (await get("/deployments?stack=app")).text();
    assert.match(
      page,
      /<span class="badge drift">drift<\/span> <strong>app<\/strong> differs from its last deploy since 2026-12-03 10:00:00Z/,
    );
    assert.ok(page.includes("web: image &lt;b&gt;evil&lt;/b&gt; → app:v1"), "the summary is escaped");
    assert.ok(page.indexOf("badge drift") < page.indexOf("<table>"), "above the deployments");
  });

  it("pages through 10,000 records on disk in order (its cost against history size: bench/history)", async (t) => {
    const s = await useTempSpool(t);
    const records = await fillHistory(s.spool, 10_000, { stacks: ["app", "web", "db"] });
    const { get } = historyApp(s.spool);
    let before = "";
    const seen: string[] = [];
    for (let page = 0; page < 5; page++) {
      const body = await json(await get(`/api/deployments?limit=100${before ? `&before=${before}` : ""}`));
      seen.push(...body.deployments.map((d) => d.id));
      before = body.next ?? "";
    }
    assert.deepEqual(
      seen,
      records.slice(0, 500).map((r) => r.jobId),
    );
  });

  it("shows one deployment with its attempts, services and release; a pending one; 404 for an unknown id", async (t) => {
    const s = await useTempSpool(t);
    const job = makeJob();
    const rec = makeRecord(new Date(), {
      jobId: job.deliveryId,
      job,
      outcome: "failed",
      reason: "web: 0/2 running <script>alert(1)</script>",
      attempts: [
        {
          attempt: 1,
          command: ["docker", "stack", "deploy"],
          exitCode: 0,
          timedOut: false,
          durationMs: 1200,
          outputTail: "Updating service app_web",
        },
      ],
      services: [
        { name: "app_web", image: "web:1", wantedImage: "web:1", updateState: "completed", updateMessage: null, desired: 2, running: 0 },
      ],
    });
    await finishJob(s.spool, rec);
    const waiting = makeJob();
    await publishJob(s.spool, waiting);
    const { get } = historyApp(s.spool);

    const one = (await (await get(`/api/deployments/${job.deliveryId}`)).json()) as { deployment: { status: string }; record: typeof rec };
    assert.equal(one.deployment.status, "failed");
    assert.equal(one.record.attempts[0]?.outputTail, "Updating service app_web");
    assert.equal(one.record.services[0]?.name, "app_web");
    const p = (await (await get(`/api/deployments/${waiting.deliveryId}`)).json()) as {
      deployment: { status: string };
      job: { sha: string };
    };
    assert.deepEqual([p.deployment.status, p.job.sha], ["queued", waiting.sha]);
    assert.equal((await get("/api/deployments/no-such-id")).status, 404);
    assert.equal((await get("/api/deployments/..%2F..%2Fetc")).status, 404);

    const page = await get(`/deployments/${job.deliveryId}`);
    assert.equal(page.status, 200);
    const text = await page.text();
    assert.ok(text.includes("&lt;script&gt;alert(1)&lt;/script&gt;") && !text.includes("<script>"), "the reason is escaped");
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.match(text, /Attempt 1: exit 0/);
    const list = await (await get("/deployments")).text();
    assert.match(list, new RegExp(`https://github.com/Codertocat/Hello-World/commit/${job.sha}`));
  });
});

describe("history index", () => {
  it("is rebuilt with the records a crash kept out of it, skips a half-written last line, and prunes by HISTORY_KEEP_DAYS", async (t) => {
    const s = await useTempSpool(t);
    const now = Date.parse("2026-11-26T12:00:00Z");
    const old = makeRecord(new Date(now - 100 * 86_400_000), { stack: "app" });
    const recent = makeRecord(new Date(now - 86_400_000), { stack: "app" });
    await finishJob(s.spool, old);
    await finishJob(s.spool, recent);
    // a record whose index line was lost (the watcher died between the two)
    const lost = makeRecord(new Date(now - 3600_000), { stack: "web" });
    await writeFile(s.spool.file("done", `${lost.timings.finished.replace(/[-:.]/g, "")}-${lost.jobId}.json`), JSON.stringify(lost));
    await appendFile(s.spool.file("index", "records.log"), "done/2026112"); // an append cut short
    assert.deepEqual(
      (await listRecords(s.spool, { limit: 10 })).map((e) => e.record?.jobId),
      [recent.jobId, old.jobId],
    );
    assert.equal(await rebuildIndex(s.spool), 3);
    assert.deepEqual(
      (await listRecords(s.spool, { limit: 10 })).map((e) => e.record?.jobId),
      [lost.jobId, recent.jobId, old.jobId],
    );
    assert.equal(await pruneRecords(s.spool, 90 * 86_400_000, now), 1);
    assert.deepEqual(
      (await listRecords(s.spool, { limit: 10 })).map((e) => e.record?.jobId),
      [lost.jobId, recent.jobId],
    );
    assert.doesNotMatch(await readFile(s.spool.file("index", "records.log"), "utf8"), new RegExp(old.jobId));
    // without an index (a spool from before it), records are still listed, from the directories
    await rm(s.spool.file("index", "records.log"));
    assert.equal((await listRecords(s.spool, { limit: 10, stack: "web" }))[0]?.record?.jobId, lost.jobId);
  });
});
