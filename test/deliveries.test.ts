// One delivery, one job: GitHub's redeliveries and two API replicas racing the watcher's claims.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { publish, readRecords, startTestAgent, stackFile, waitForRecord } from "./helpers/agent.ts";
import { deliver, startTestApi } from "./helpers/api.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushPayload } from "./helpers/payloads.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { uniqueStack } from "./helpers/swarm.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("one delivery, one job", () => {
  it("30 deliveries of one id over 2 s to two API replicas (3 bursts of 10 at once), the watcher polling every 50 ms: one record, one deploy", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    const apis = [await startTestApi(s.root, { DEPLOY_BRANCHES: "main" }), await startTestApi(s.root, { DEPLOY_BRANCHES: "main" })];
    onEnd(t, () => Promise.all(apis.map((a) => a.close())).then(() => undefined));
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack, POLL_INTERVAL_MS: "50" });
    onEnd(t, () => agent.stop());
    const deliveryId = randomUUID();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: sha }));
    const answers: number[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        await sleep(Math.floor(i / 10) * 700); // 10 at once, then 10 more as the watcher claims, then 10 after
        answers.push((await deliver((apis[i % 2] as { url: string }).url, { event: "push", body, deliveryId })).status);
      }),
    );
    assert.equal(answers.filter((a) => a === 202).length, 1, `answers: ${answers.join(" ")}`);
    assert.ok(answers.every((a) => a === 202 || a === 200));
    const record = await waitForRecord(s.root, deliveryId);
    assert.equal(record.outcome, "success", record.reason);
    await sleep(1000); // a second job, had one slipped through, would be claimed by now
    const records = (await readRecords(s.root)).filter((r) => r.jobId === deliveryId);
    assert.equal(records.length, 1);
    assert.equal(agent.logs.filter((l) => l.msg === "deploy started").length, 1, "one deploy");
    assert.deepEqual([...(await fs.readdir(path.join(s.root, "new"))), ...(await fs.readdir(path.join(s.root, "work")))], []);
    // GitHub's redelivery after success: answered, and nothing is queued
    const again = await deliver(apis[0]?.url ?? "", { event: "push", body, deliveryId });
    assert.deepEqual([again.status, again.json], [200, { jobId: deliveryId, alreadyHandled: "success" }]);
    assert.deepEqual(await fs.readdir(path.join(s.root, "new")), []);
  });

  it("a redelivery after a failed deploy is a new attempt, recorded on its own", async (t) => {
    const s = await useTempSpool(t);
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("invalid"), STACK_NAME: uniqueStack(t) });
    onEnd(t, () => agent.stop());
    const api = await startTestApi(s.root, { DEPLOY_BRANCHES: "main" });
    onEnd(t, () => api.close());
    const deliveryId = randomUUID();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    assert.equal((await deliver(api.url, { event: "push", body, deliveryId })).status, 202);
    assert.equal((await waitForRecord(s.root, deliveryId)).outcome, "failed");
    assert.equal((await deliver(api.url, { event: "push", body, deliveryId })).status, 202, "queued again");
    await sleep(100);
    const both = await waitForRecords(s.root, deliveryId, 2);
    assert.deepEqual(
      both.map((r) => `${r.trigger}:${r.outcome}`),
      ["push:failed", "redelivery:failed"],
    );
  });

  it("a job published while the same id is claimed is never deployed twice (no-clobber claim)", async (t) => {
    const s = await useTempSpool(t);
    const id = await publish(s.root, randomSha());
    // the watcher's claim, frozen between link and unlink: the id is in work/ and a second copy arrives in new/
    await fs.link(path.join(s.root, "new", `${id}.json`), path.join(s.root, "work", `${id}.json`));
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("invalid"), STACK_NAME: uniqueStack(t) });
    onEnd(t, () => agent.stop());
    await waitForRecord(s.root, id);
    await sleep(600);
    assert.equal((await readRecords(s.root)).filter((r) => r.jobId === id).length, 1);
    assert.deepEqual(await fs.readdir(path.join(s.root, "new")), []);
  });
});

async function waitForRecords(root: string, jobId: string, n: number) {
  for (let i = 0; i < 240; i++) {
    const rs = (await readRecords(root)).filter((r) => r.jobId === jobId);
    if (rs.length >= n) return rs;
    await sleep(250);
  }
  throw new Error(`fewer than ${n} records of ${jobId}`);
}
