import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  readBounded,
  claimJob,
  cleanStaleTemp,
  ensureSpool,
  finishJob,
  recoverInterrupted,
  listPending,
  openSpool,
  publishJob,
  pruneMarks,
  readClaimed,
  ResultRecordSchema,
  SpoolError,
  type ResultRecord,
} from "../spool/index.ts";
import { makeJob } from "./helpers/jobs.ts";
import { spawnTs, stopProc, waitForLine } from "./helpers/proc.ts";
import { tempSpool, useTempSpool, type TempSpool } from "./helpers/spool.ts";

async function run(script: string, args: string[]): Promise<string> {
  const p = spawnTs(`test/fixtures/${script}`, args, {});
  const code = await p.exited;
  if (code !== 0) throw new Error(`${script} exited ${code}: ${p.err()}`);
  return p.out();
}

async function readRecord(root: string, dir: string, name: string): Promise<ResultRecord> {
  return ResultRecordSchema.parse(JSON.parse(await fs.readFile(path.join(root, dir, name), "utf8")));
}

describe("spool layout", () => {
  it("never creates a missing root, and says the mount is missing", async () => {
    const root = path.join(os.tmpdir(), `swarmhook-missing-${randomUUID()}`);
    await assert.rejects(ensureSpool(openSpool(root)), (err: unknown) => {
      assert.ok(err instanceof SpoolError);
      assert.equal(err.code, "root_missing");
      assert.match(err.message, /NFS mount/);
      return true;
    });
    await assert.rejects(fs.stat(root), { code: "ENOENT" });
  });

  it("lays out the API's directories group-writable and the watcher's read-only for the group, files 0640", async () => {
    const t = await tempSpool();
    try {
      assert.equal((await fs.stat(t.root)).mode & 0o7777, 0o2750, "the root: the group may enter, never rename or replace");
      for (const sub of ["tmp", "new", "ids"]) assert.equal((await fs.stat(path.join(t.root, sub))).mode & 0o7777, 0o2770, sub);
      for (const sub of ["work", "done", "failed", "state", "index", "wtmp"])
        assert.equal((await fs.stat(path.join(t.root, sub))).mode & 0o7777, 0o2750, sub);
      assert.deepEqual(await ensureSpool(t.spool), { corrected: [], problems: [] }, "a second run changes nothing and does not fail");
      const { jobId } = await publishJob(openSpool(t.root, "api"), makeJob());
      const st = await fs.stat(path.join(t.root, "new", `${jobId}.json`));
      assert.equal(st.mode & 0o777, 0o640);
      assert.deepEqual(await fs.readdir(path.join(t.root, "wtmp")), [], "the API writes through tmp/, never the watcher's wtmp/");
    } finally {
      await t.cleanup();
    }
  });

  it("makes files 0640 under a umask that would cut them (077), as under one that would not", async () => {
    const t = await tempSpool();
    try {
      // a process of its own: whether the umask cuts the mode is learnt once per process
      const writer = spawn("bash", ["-c", 'umask 077 && exec "$0" --import tsx test/fixtures/writer.ts "$1"', process.execPath, t.root], {
        cwd: path.join(import.meta.dirname, ".."),
        stdio: ["ignore", "pipe", "inherit"],
      });
      const ids: string[] = [];
      let partial = "";
      await new Promise<void>((resolve, reject) => {
        writer.stdout.on("data", (d: Buffer) => {
          const lines = (partial + d.toString()).split("\n");
          partial = lines.pop() ?? ""; // a line cut between two chunks waits for its end
          ids.push(...lines.filter((l) => l && l !== "ready"));
          if (ids.length >= 3) resolve();
        });
        writer.on("exit", (code) => reject(new Error(`the writer exited (${code}) after ${ids.length} jobs`)));
      });
      writer.kill("SIGKILL");
      for (const id of ids.slice(0, 3)) assert.equal((await fs.stat(path.join(t.root, "new", `${id}.json`))).mode & 0o777, 0o640, id);
    } finally {
      await t.cleanup();
    }
  });
});

describe("publishJob", () => {
  let t: TempSpool;
  before(async () => (t = await tempSpool()));
  after(() => t.cleanup());

  it("publishes a complete job under its delivery id and leaves tmp/ empty", async () => {
    const job = makeJob();
    const r = await publishJob(t.spool, job);
    assert.deepEqual(r, { jobId: job.deliveryId, status: "queued" });
    const text = await fs.readFile(path.join(t.root, "new", `${job.deliveryId}.json`), "utf8");
    assert.deepEqual(JSON.parse(text), job);
    assert.deepEqual(await fs.readdir(path.join(t.root, "tmp")), []);
  });

  it("keeps a pending duplicate delivery as one job, also when both arrive at once", async () => {
    const job = makeJob();
    const results = await Promise.all([
      publishJob(t.spool, job),
      publishJob(t.spool, job),
      publishJob(t.spool, { ...job, sha: "f".repeat(40) }),
    ]);
    assert.equal(results.filter((r) => r.status === "queued").length, 1);
    const again = await publishJob(t.spool, job);
    assert.equal(again.status, "duplicate");
    // claimed and in progress is still pending
    await claimJob(t.spool, `${job.deliveryId}.json`);
    assert.equal((await publishJob(t.spool, job)).status, "duplicate");
    assert.deepEqual(
      (await listPending(t.spool)).filter((n) => n.startsWith(job.deliveryId)),
      [],
    );
    assert.deepEqual(await fs.readdir(path.join(t.root, "tmp")), []);
  });

  it("refuses a path-like delivery id before touching the filesystem", async () => {
    const before = await fs.readdir(path.join(t.root, "new"));
    for (const deliveryId of ["../../etc/passwd", "a/b", "..", "x y", ""]) {
      await assert.rejects(publishJob(t.spool, makeJob({ deliveryId })), /deliveryId/);
    }
    assert.deepEqual(await fs.readdir(path.join(t.root, "new")), before);
    assert.deepEqual(await fs.readdir(path.join(t.root, "tmp")), []);
  });

  it("maps a missing root to SpoolError root_missing", async () => {
    const gone = await tempSpool();
    await gone.cleanup();
    await assert.rejects(publishJob(gone.spool, makeJob()), (err: unknown) => err instanceof SpoolError && err.code === "root_missing");
  });
});

describe("claimJob", () => {
  it("hands each of 200 jobs to exactly one of 8 concurrent claimer processes", async () => {
    const t = await tempSpool();
    try {
      const ids = new Set<string>();
      for (let i = 0; i < 200; i++) ids.add((await publishJob(t.spool, makeJob())).jobId);
      const outputs = await Promise.all(Array.from({ length: 8 }, () => run("claimer.ts", [t.root])));
      const claimed = outputs.flatMap((o) => o.split("\n").filter(Boolean));
      assert.equal(claimed.length, 200, "every job claimed once, none twice");
      assert.deepEqual(new Set(claimed), ids);
      assert.ok(outputs.filter((o) => o.length > 0).length > 1, "the claimers really competed");
      assert.deepEqual(await listPending(t.spool), []);
      assert.equal((await fs.readdir(path.join(t.root, "work"))).length, 200);
    } finally {
      await t.cleanup();
    }
  });

  it("quarantines bad files with the reason and never hands them out", async () => {
    const t = await tempSpool();
    try {
      const put = (name: string, body: string) => fs.writeFile(path.join(t.root, "new", name), body);
      const good = makeJob();
      const cases: Record<string, [string, RegExp]> = {
        [`${randomUUID()}-unknown.json`]: [JSON.stringify({ ...makeJob(), extra: 1 }), /Unrecognized key.*extra/i],
        [`${randomUUID()}-sha.json`]: [JSON.stringify(makeJob({ sha: "abc123" })), /sha/],
        ["pathlike.json"]: [JSON.stringify({ ...makeJob(), deliveryId: "../../etc/passwd" }), /deliveryId/],
        ["a b;rm -rf ~.json"]: [JSON.stringify(good), /file name/],
        [`${randomUUID()}.json`]: ["{ not json", /not JSON/],
        [`${randomUUID()}-kind.json`]: [
          JSON.stringify({ ...makeJob(), kind: "exec" }),
          /unknown job kind "exec" \(this watcher knows deploy, rollback\): upgrade/,
        ],
        [`${randomUUID()}-v2.json`]: [
          JSON.stringify({ ...makeJob(), version: 2 }),
          /job format version 2 is newer than this watcher's \(1\)/,
        ],
        [`${randomUUID()}-rollback.json`]: [
          JSON.stringify({ ...makeJob(), kind: "rollback" }),
          /a rollback job names the record to go back to \(fromRecord\), never images/,
        ],
        [`${randomUUID()}-name.json`]: [JSON.stringify(makeJob()), /does not match deliveryId/],
        [`${randomUUID()}-big.json`]: ["x".repeat(70 * 1024), /too large/],
      };
      for (const [name, [body]] of Object.entries(cases)) {
        const fixed =
          name.endsWith("-unknown.json") || name.endsWith("-sha.json") || name.endsWith("-kind.json")
            ? body.replace(/"deliveryId":"[^"]+"/, `"deliveryId":"${name.slice(0, -5)}"`)
            : body;
        await put(name, fixed);
      }
      await fs.symlink("/etc/passwd", path.join(t.root, "new", `${randomUUID()}.json`));
      const reasons: string[] = [];
      for (const name of await listPending(t.spool)) {
        const r = await claimJob(t.spool, name);
        assert.equal(r.status, "quarantined", `${name} must not be handed out`);
        if (r.status === "quarantined") {
          reasons.push(r.reason);
          const rec = await readRecord(t.root, "failed", r.record);
          assert.equal(rec.outcome, "invalid");
          assert.equal(rec.reason, r.reason);
          if (/symbolic link/.test(r.reason)) {
            assert.match(r.reason, /removed: a symbolic link, nothing kept/); // never followed, never moved where the API could reach
            continue;
          }
          assert.ok(rec.quarantinedAs);
          const kept = await fs.lstat(path.join(t.root, "failed", rec.quarantinedAs)); // the bytes are kept
          assert.equal(kept.mode & 0o777, 0o640, "as the watcher's own copy, not the writer's file");
        }
      }
      for (const [name, [, pattern]] of Object.entries(cases)) {
        assert.ok(
          reasons.some((r) => pattern.test(r)),
          `${name}: no reason matching ${pattern} in ${reasons.join(" | ")}`,
        );
      }
      assert.ok(reasons.some((r) => /symbolic link/.test(r)));
      assert.deepEqual(await listPending(t.spool), []);
      assert.deepEqual(await recoverInterrupted(t.spool), []);
      for (const name of await fs.readdir(path.join(t.root, "failed"))) assert.match(name, /^[0-9TZ]+-[A-Za-z0-9._-]+$/);
    } finally {
      await t.cleanup();
    }
  });
});

describe("crash safety", () => {
  it("a writer SIGKILLed mid-write leaves only complete jobs in new/", async (ctx) => {
    const t = await tempSpool();
    try {
      // until a kill is seen to land mid-write (a temp file left in tmp/), at least 4 rounds
      let midWrite = 0;
      for (let round = 0; round < 4 || (midWrite === 0 && round < 40); round++) {
        const tmpBefore = (await fs.readdir(path.join(t.root, "tmp"))).length;
        const writer = spawnTs("test/fixtures/writer.ts", [t.root], {});
        await waitForLine(writer, "ready", undefined, 30_000);
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
        await stopProc(writer, "SIGKILL");
        const acked = writer
          .out()
          .split("\n")
          .filter((l) => l && l !== "ready");
        const pending = await listPending(t.spool);
        for (const id of acked) assert.ok(pending.includes(`${id}.json`), `acknowledged job ${id} is in new/`);
        for (const name of pending) {
          const r = await readClaimedCopy(t, name);
          assert.equal(r, "valid", `${name} is complete and valid`);
        }
        if ((await fs.readdir(path.join(t.root, "tmp"))).length > tmpBefore) midWrite += 1;
      }
      assert.ok(midWrite > 0, "no kill landed mid-write: the test proved nothing");
      ctx.diagnostic(`${midWrite} kill(s) landed mid-write`);
      // what the killed writers left in tmp/ is removed, and was never published
      const tmpLeft = (await fs.readdir(path.join(t.root, "tmp"))).map((n) => `tmp/${n}`);
      const before = await listPending(t.spool);
      const removed = await cleanStaleTemp(t.spool, Date.now() + 60 * 60 * 1000);
      assert.deepEqual(removed.sort(), tmpLeft.sort());
      assert.deepEqual(await listPending(t.spool), before);
    } finally {
      await t.cleanup();
    }
  });

  it("removes a stale tmp/ file, keeps a fresh one, and never publishes either", async () => {
    const t = await tempSpool();
    try {
      const job = makeJob();
      const stale = path.join(t.root, "tmp", `${job.deliveryId}.1-aaaaaa.tmp`);
      const fresh = path.join(t.root, "tmp", `${job.deliveryId}.2-bbbbbb.tmp`);
      await fs.writeFile(stale, JSON.stringify(job));
      await fs.writeFile(fresh, JSON.stringify(job));
      const old = new Date(Date.now() - 11 * 60 * 1000);
      await fs.utimes(stale, old, old);
      assert.deepEqual(await cleanStaleTemp(t.spool), [`tmp/${path.basename(stale)}`]);
      assert.deepEqual(await fs.readdir(path.join(t.root, "tmp")), [path.basename(fresh)]);
      assert.deepEqual(await listPending(t.spool), []);
    } finally {
      await t.cleanup();
    }
  });

  it("finishes a job into done/ or failed/ and finds what a dead run left in work/", async () => {
    const t = await tempSpool();
    try {
      const a = makeJob();
      const b = makeJob();
      await publishJob(t.spool, a);
      await publishJob(t.spool, b);
      for (const j of [a, b]) assert.equal((await claimJob(t.spool, `${j.deliveryId}.json`)).status, "claimed");
      // a restarted agent sees both in work/ and can parse them again
      const recovered = await recoverInterrupted(t.spool);
      assert.deepEqual(
        recovered.map((r) => (r.status === "claimed" ? r.jobId : r.status)),
        [a.deliveryId, b.deliveryId].sort(),
      );
      const again = await readClaimed(t.spool, `${a.deliveryId}.json`);
      assert.equal(again.status, "claimed");
      const finished = new Date().toISOString();
      const base = {
        stack: "app",
        attempts: [],
        services: [],
        warnings: [],
        timings: { received: a.receivedAt, claimed: finished, started: finished, finished },
      };
      const okPath = await finishJob(t.spool, { ...base, outcome: "success", jobId: a.deliveryId, job: a });
      const badPath = await finishJob(t.spool, { ...base, outcome: "rolled_back", jobId: b.deliveryId, job: b });
      assert.match(okPath, /^done\/\d{8}T\d{9}Z-/);
      assert.match(badPath, /^failed\//);
      assert.deepEqual(await recoverInterrupted(t.spool), []);
      const rec = await readRecord(t.root, "done", okPath.slice("done/".length));
      assert.deepEqual(rec.job, a);
      // a redelivery after success is already handled; after a failure it is a new attempt (GitHub's "Redeliver")
      assert.deepEqual(await publishJob(t.spool, a), { jobId: a.deliveryId, status: "handled", outcome: "success" });
      assert.deepEqual(await publishJob(t.spool, b), { jobId: b.deliveryId, status: "queued" });
    } finally {
      await t.cleanup();
    }
  });
});

/** Parse a pending file the way the agent would, without claiming it. */
async function readClaimedCopy(t: TempSpool, name: string): Promise<string> {
  const text = await fs.readFile(path.join(t.root, "new", name), "utf8");
  try {
    const job = JSON.parse(text) as { deliveryId?: string };
    return job.deliveryId && `${job.deliveryId}.json` === name ? "valid" : "mismatch";
  } catch {
    return "truncated";
  }
}

describe("pruneMarks", () => {
  it("removes finished delivery markers older than a week, never a pending one", async (t) => {
    const s = await useTempSpool(t);
    const old = makeJob();
    const fresh = makeJob();
    const pending = makeJob();
    for (const j of [old, fresh, pending]) await publishJob(s.spool, j);
    const now = new Date().toISOString();
    const timings = { received: now, claimed: now, started: now, finished: now };
    for (const j of [old, fresh]) {
      assert.equal((await claimJob(s.spool, `${j.deliveryId}.json`)).status, "claimed");
      await finishJob(s.spool, {
        outcome: "success",
        jobId: j.deliveryId,
        job: j,
        stack: "app",
        timings,
        attempts: [],
        services: [],
        warnings: [],
      });
    }
    const eightDaysAgo = new Date(Date.now() - 8 * 24 * 3600 * 1000);
    for (const j of [old, pending]) await fs.utimes(path.join(s.root, "ids", j.deliveryId), eightDaysAgo, eightDaysAgo);
    assert.equal(await pruneMarks(s.spool), 1);
    assert.deepEqual((await fs.readdir(path.join(s.root, "ids"))).sort(), [fresh.deliveryId, pending.deliveryId].sort());
    assert.deepEqual(await publishJob(s.spool, fresh), { jobId: fresh.deliveryId, status: "handled", outcome: "success" });
  });
});

describe("readBounded", () => {
  it("reads a file up to its bound exactly, refuses one byte more, and holds only what the file has (not the bound)", async (t) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-read-"));
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, "f.json");
    await fs.writeFile(file, "");
    assert.equal(await readBounded(file, 8), "");
    await fs.writeFile(file, "ä".repeat(4)); // 8 bytes of UTF-8
    assert.equal(await readBounded(file, 8), "ääää");
    assert.deepEqual(await readBounded(file, 7), { reason: "file too large (8 bytes > 7)" });
    await fs.writeFile(file, Buffer.from([0xc3])); // half a character
    assert.deepEqual(await readBounded(file, 8), { reason: "not UTF-8 text" });
    // a 12-byte file read 200 times under a 64 MiB bound: a buffer the size of the bound each time would be 12.5 GiB
    await fs.writeFile(file, '{"ok": true}');
    const before = process.memoryUsage().arrayBuffers;
    let grew = 0;
    for (let i = 0; i < 200; i++) {
      assert.equal(await readBounded(file, 64 * 1024 * 1024), '{"ok": true}');
      grew = Math.max(grew, process.memoryUsage().arrayBuffers - before);
    }
    assert.ok(grew < 16 * 1024 * 1024, `array buffers grew by up to ${grew} bytes`);
  });
});
