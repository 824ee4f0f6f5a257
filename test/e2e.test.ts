// End to end on the three-manager netns swarm: two API processes (uid 1011, as in their containers)
// write one spool; the watcher reads it through a bindfs mount (no inotify, like NFS) and deploys to
// kvm8's daemon. Every fault ends with nothing lost, the outcome recorded and the final state checked.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { JobSchema, ensureSpool, openSpool, type ResultRecord } from "../spool/index.ts";
import { readRecords, stackFile, waitForRecord } from "./helpers/agent.ts";
import { SECRET } from "./helpers/api.ts";
import { mountBindfs, type BindfsMount } from "./helpers/bindfs.ts";
import { WEB_REPO, buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushPayload, sign } from "./helpers/payloads.ts";
import { freePort } from "./helpers/postgres.ts";
import { spawnTs, stopProc, waitForLine, type Proc } from "./helpers/proc.ts";
import { docker, loadIntoNodes, netnsSwarm, nodeHost, waitFor } from "./helpers/swarm.ts";

const APP_GID = 1011;
const KVM8 = nodeHost("kvm8");
const WEB = "e2e_web";

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe("end to end on the three-node swarm", { timeout: 20 * 60_000 }, () => {
  let spoolRoot: string;
  let mount: BindfsMount;
  let agentConfig: string;
  const apis: { proc: Proc; url: string; port: number }[] = [];
  let agent: Proc | undefined;
  const agentEnv = () => ({
    SPOOL_DIR: mount.mountpoint,
    AGENT_CONFIG: agentConfig,
    DOCKER_HOST: KVM8,
    POLL_INTERVAL_MS: "500",
    DEPLOY_TIMEOUT_S: "90",
    RETRY_BACKOFF_MS: "500",
    LOG_LEVEL: "info",
    // the faults below judge each record against the cluster's own account, read right after it is
    // written; an automatic rollback would change that account underneath (ON_FAILURE=rollback is
    // tested on the one-node swarm, test/rollback.test.ts)
    ON_FAILURE: "stay",
  });
  const startApi = async (i: number, port?: number) => {
    const p = port ?? (await freePort());
    const proc = spawnTs(
      "api/main.ts",
      [],
      {
        SPOOL_DIR: spoolRoot,
        GITHUB_WEBHOOK_SECRET: SECRET,
        PORT: String(p),
        HOST: "127.0.0.1",
        DEPLOY_REPOSITORY: "Codertocat/Hello-World",
        DEPLOY_BRANCHES: "main burst",
        LOG_LEVEL: "warn",
      },
      { uid: APP_GID, gid: APP_GID },
    );
    const url = `http://127.0.0.1:${p}`;
    await waitFor(`api ${i}`, async () => ((await fetch(`${url}/health`)).ok ? true : undefined), 30_000, 100);
    apis[i] = { proc, url, port: p };
  };
  const startAgent = async () => {
    agent = spawnTs("agent/main.ts", [], agentEnv());
    await waitForLine(agent, '"watcher starting"', undefined, 30_000);
  };

  /** A signed push, built from GitHub's example payload, to one API process. */
  const push = async (api: number, o: { sha: string; before?: string; branch?: string; committedAt?: string; deliveryId?: string }) => {
    const ref = `refs/heads/${o.branch ?? "main"}`;
    const body = JSON.stringify(pushPayload({ ref, before: o.before, after: o.sha, timestamp: o.committedAt ?? new Date().toISOString() }));
    const res = await fetch(`${apis[api]?.url}/api/webhook/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": o.deliveryId ?? randomUUID(),
        "x-hub-signature-256": sign(SECRET, body),
      },
      body,
    });
    return { status: res.status, json: (await res.json()) as { jobId?: string; duplicate?: boolean; error?: string } };
  };
  const recordOf = (jobId: string, timeoutMs = 150_000) => waitForRecord(spoolRoot, jobId, timeoutMs);
  const specImage = () => docker(["service", "inspect", WEB, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"], { host: KVM8 });
  const runningTasks = async () =>
    (
      await docker(["service", "ps", WEB, "--filter", "desired-state=running", "--format", "{{.Node}} {{.Image}} {{.CurrentState}}"], {
        host: KVM8,
      })
    )
      .split("\n")
      .filter((l) => / Running /.test(l))
      .map((l) => l.split(" ").slice(0, 2) as [string, string]);
  const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

  let current = ""; // the commit the web service runs
  const shas = {
    first: randomSha(),
    second: randomSha(),
    broken: randomSha(),
    afterKill: randomSha(),
    nodeDown: randomSha(),
    old: randomSha(),
  };

  before(async () => {
    await Promise.all([
      buildWebImage(shas.first),
      buildWebImage(shas.second),
      buildWebImage(shas.broken, { crash: true }),
      buildWebImage(shas.afterKill),
      buildWebImage(shas.nodeDown),
    ]);
    await netnsSwarm("up");
    for (const sha of [shas.first, shas.second, shas.broken, shas.afterKill, shas.nodeDown]) await loadIntoNodes(`${WEB_REPO}:${sha}`);
    spoolRoot = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-e2e-spool-"));
    await fs.chown(spoolRoot, 0, APP_GID);
    await fs.chmod(spoolRoot, 0o2770);
    await ensureSpool(openSpool(spoolRoot));
    mount = await mountBindfs(spoolRoot);
    agentConfig = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-e2e-cfg-")), "stacks.yaml");
    await fs.writeFile(
      agentConfig,
      `stacks:\n  - name: e2e\n    file: ${stackFile("e2e-web")}\n    repository: Codertocat/Hello-World\n    branches: [main]\n` +
        `  - name: e2eburst\n    file: ${stackFile("e2e-burst")}\n    repository: Codertocat/Hello-World\n    branches: [burst]\n`,
    );
    await startApi(0);
    await startApi(1);
    await startAgent();
  });

  after(async () => {
    await stopProc(agent);
    for (const a of apis) await stopProc(a?.proc);
    await mount?.unmount();
    await netnsSwarm("down");
    await fs.rm(spoolRoot, { recursive: true, force: true });
    await fs.rm(path.dirname(agentConfig), { recursive: true, force: true });
  });

  it("turns a signed push into a verified deploy on the swarm", async (t) => {
    const started = performance.now();
    const r = await push(0, { sha: shas.first, committedAt: minutesAgo(60) });
    assert.equal(r.status, 202);
    const rec = await recordOf(r.json.jobId as string);
    const took = performance.now() - started;
    assert.equal(rec.outcome, "success", rec.reason);
    assert.equal(await specImage(), `${WEB_REPO}:${shas.first}`);
    const tasks = await runningTasks();
    assert.equal(tasks.length, 2);
    assert.ok(tasks.every(([, img]) => img === `${WEB_REPO}:${shas.first}`));
    assert.equal(new Set(tasks.map(([node]) => node)).size, 2, "two replicas on two nodes");
    current = shas.first;
    t.diagnostic(`request → verified deploy: ${seconds(took)}`);
  });

  it("8: quarantines a malformed file dropped into new/, and keeps working", async (t) => {
    const bad = path.join(spoolRoot, "new", `${randomUUID()}.json`);
    await fs.writeFile(bad, '{"version":1,"kind":"deploy","sha":"; rm -rf /"}');
    const quarantined = await waitFor(
      "the quarantine record",
      async () => (await readRecords(spoolRoot)).find((r) => r.outcome === "invalid"),
      30_000,
      100,
    );
    assert.match(quarantined.reason ?? "", /schema/);
    await fs.access(path.join(spoolRoot, "failed", quarantined.quarantinedAs as string));
    const started = performance.now();
    // the branch went first → old → second; the push of `old` is delivered late (fault 6)
    const r = await push(1, { sha: shas.second, before: shas.old, committedAt: minutesAgo(50) });
    const rec = await recordOf(r.json.jobId as string);
    assert.equal(rec.outcome, "success", rec.reason);
    assert.equal(await specImage(), `${WEB_REPO}:${shas.second}`);
    current = shas.second;
    t.diagnostic(`next push deployed ${seconds(performance.now() - started)} after the quarantine`);
  });

  it("5: records a crashing image as rolled_back, the service back on the previous image", async (t) => {
    const started = performance.now();
    const r = await push(0, { sha: shas.broken, committedAt: minutesAgo(40) });
    const rec = await recordOf(r.json.jobId as string);
    assert.equal(rec.outcome, "rolled_back", rec.reason);
    assert.equal(await specImage(), `${WEB_REPO}:${current}`);
    await waitFor("both replicas on the previous image", async () => {
      const tasks = await runningTasks();
      return tasks.length === 2 && tasks.every(([, img]) => img === `${WEB_REPO}:${current}`) ? true : undefined;
    });
    t.diagnostic(`rolled back and recorded in ${seconds(performance.now() - started)}`);
  });

  it("6: records a late push the branch has moved past as stale and does not deploy it", async () => {
    // its commit date is the newest of all: only GitHub's push chain decides
    const r = await push(1, { sha: shas.old, before: shas.first, committedAt: new Date().toISOString() });
    const rec = await recordOf(r.json.jobId as string);
    assert.equal(rec.outcome, "stale");
    assert.match(rec.reason ?? "", /moved past it/);
    assert.equal(rec.attempts.length, 0);
    assert.equal(await specImage(), `${WEB_REPO}:${current}`);
  });

  it("1: finishes a job after the watcher is SIGKILLed mid-deploy and restarted", async (t) => {
    const r = await push(0, { sha: shas.afterKill, committedAt: minutesAgo(30) });
    const jobId = r.json.jobId as string;
    await waitForLine(agent, '"deploy started"', shas.afterKill);
    await stopProc(agent, "SIGKILL");
    assert.deepEqual(await fs.readdir(path.join(spoolRoot, "work")), [`${jobId}.json`]);
    const restarted = performance.now();
    await startAgent();
    const rec = await recordOf(jobId);
    assert.equal(rec.outcome, "success", rec.reason);
    assert.equal(await specImage(), `${WEB_REPO}:${shas.afterKill}`);
    current = shas.afterKill;
    t.diagnostic(`restart → job finished: ${seconds(performance.now() - restarted)}`);
  });

  it("3: answers 503 while the spool is unwritable, 202 once it is writable, nothing partial", async (t) => {
    const dirs = ["tmp", "new"].map((d) => path.join(spoolRoot, d));
    for (const d of dirs) await fs.chmod(d, 0o2550);
    let restored = 0;
    try {
      const down = await push(0, { sha: randomSha(), branch: "burst" });
      assert.equal(down.status, 503);
      assert.match(down.json.error ?? "", /unwritable/);
    } finally {
      for (const d of dirs) await fs.chmod(d, 0o2770);
      restored = performance.now();
    }
    const up = await push(0, { sha: randomSha(), branch: "burst" });
    assert.equal(up.status, 202);
    t.diagnostic(`writable again → 202 after ${seconds(performance.now() - restored)}`);
    assert.deepEqual((await fs.readdir(path.join(spoolRoot, "tmp"))).length, 0, "no partial job in tmp/");
    const rec = await recordOf(up.json.jobId as string);
    assert.equal(rec.outcome, "success", rec.reason);
  });

  it("7: an API SIGKILLed while a job write is in progress loses nothing it acknowledged, and half a write is never a job", async (t) => {
    const acked: string[] = [];
    const tmp = path.join(spoolRoot, "tmp");
    let caught = false;
    for (let attempt = 1; attempt <= 5 && !caught; attempt++) {
      let stop = false;
      const senders = Array.from({ length: 10 }, async () => {
        while (!stop) {
          try {
            const r = await push(0, { sha: randomSha(), branch: "burst" });
            if (r.status === 202 && r.json.jobId) acked.push(r.json.jobId);
          } catch {
            // the connection died with the process: no answer, no promise made
          }
        }
      });
      const ackedBefore = acked.length;
      await waitFor("20 acknowledged deliveries", async () => (acked.length >= ackedBefore + 20 ? true : undefined), 30_000, 5);
      // synchronise on a write in progress: this API's job file in tmp/ (named <id>.<pid>-…), fsynced, not yet linked into new/
      const mine = `.${apis[0]?.proc.child.pid}-`;
      const writing = async () => (await fs.readdir(tmp)).some((n) => n.includes(mine));
      await waitFor("a write in progress", async () => ((await writing()) ? true : undefined), 10_000, 1);
      await stopProc(apis[0]?.proc, "SIGKILL");
      caught = await writing(); // the kill landed before that write finished
      stop = true;
      await Promise.all(senders);
      await startApi(0, apis[0]?.port);
      t.diagnostic(`attempt ${attempt}: ${caught ? "killed with a write in progress" : "the write finished first; again"}`);
    }
    assert.ok(caught, "the SIGKILL landed while a job was being written");
    assert.ok(acked.length > 0, "some deliveries were acknowledged before the kill");
    for (const name of await fs.readdir(path.join(spoolRoot, "new"))) {
      // complete and valid; one the watcher claims meanwhile is judged by it (no `invalid` record, below)
      const text = await fs.readFile(path.join(spoolRoot, "new", name), "utf8").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return null;
        throw err;
      });
      if (text !== null) JobSchema.parse(JSON.parse(text));
    }
    const records = await waitFor(
      "every acknowledged job recorded",
      async () => {
        const recs = await readRecords(spoolRoot);
        const ids = new Set(recs.map((r) => r.jobId));
        return acked.every((id) => ids.has(id)) ? recs : undefined;
      },
      180_000,
      500,
    );
    for (const id of acked) assert.equal(records.filter((r) => r.jobId === id).length, 1, `exactly one record of ${id}`);
    const mine = records.filter((r) => acked.includes(r.jobId));
    assert.ok(
      mine.every((r) => r.outcome === "success" || r.outcome === "superseded"),
      mine.map((r) => `${r.outcome} ${r.reason}`).join("\n"),
    );
    assert.equal(records.filter((r) => r.outcome === "invalid").length, 1, "only the hand-made file of fault 8 was ever invalid");
    t.diagnostic(`${acked.length} deliveries acknowledged around the kills, each recorded once`);
  });

  it("4: 200 deliveries in 10 s over two APIs, 20 duplicates: every one answered and accounted for", async (t) => {
    const before = new Set((await readRecords(spoolRoot)).map((r) => r.jobId));
    const base = Date.now();
    const answers: { id: string; status: number; duplicate: boolean }[] = [];
    const started = performance.now();
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 180; i++) {
      const id = randomUUID();
      const o = { sha: randomSha(), branch: "burst", committedAt: new Date(base + i * 1000).toISOString(), deliveryId: id };
      const once = (api: number) =>
        push(api, o).then((r) => void answers.push({ id, status: r.status, duplicate: r.json.duplicate === true }));
      // every ninth delivery arrives twice at once, once at each API: the 20 duplicates
      sends.push(once(i % 2));
      if (i % 9 === 0) sends.push(once((i + 1) % 2));
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(sends);
    const sendMs = performance.now() - started;
    assert.equal(answers.length, 200);
    assert.ok(
      answers.every((a) => a.status === 202 || (a.status === 200 && a.duplicate)),
      JSON.stringify(answers.filter((a) => a.status >= 300)),
    );
    const distinct = new Set(answers.map((a) => a.id));
    assert.equal(distinct.size, 180);
    assert.equal(answers.filter((a) => a.duplicate).length, 20, "each duplicate answered as one");
    const records = await waitFor(
      "all 180 recorded",
      async () => {
        const recs = (await readRecords(spoolRoot)).filter((r) => distinct.has(r.jobId));
        return recs.length >= 180 ? recs : undefined;
      },
      240_000,
      500,
    );
    const drained = performance.now() - started;
    assert.equal(records.length, 180, "duplicates not doubled");
    assert.equal(new Set(records.map((r) => r.jobId)).size, 180);
    assert.ok(
      records.every((r) => r.outcome === "success" || r.outcome === "superseded"),
      records
        .filter((r) => r.outcome !== "success" && r.outcome !== "superseded")
        .map((r) => `${r.outcome}: ${r.reason}`)
        .join("\n"),
    );
    const deploys = records.filter((r) => r.attempts.length > 0);
    assert.ok(deploys.length <= 8, `${deploys.length} deploys for 180 deliveries`);
    const newest = records.reduce((a: ResultRecord, b) =>
      Date.parse(b.job?.receivedAt ?? "") > Date.parse(a.job?.receivedAt ?? "") ? b : a,
    );
    assert.equal(newest.outcome, "success", "the newest delivery was deployed");
    const env = await docker(["service", "inspect", "e2eburst_app", "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"], { host: KVM8 });
    assert.ok(env.includes(`DEPLOY_SHA=${newest.job?.sha}`));
    assert.equal([...before].filter((id) => distinct.has(id)).length, 0);
    t.diagnostic(
      `sent in ${seconds(sendMs)}, all 180 recorded after ${seconds(drained)}: ${deploys.length} deploys, ${records.length - deploys.length} superseded`,
    );
  });

  it("2: with one node's dockerd stopped, a deploy that cannot place its tasks is recorded failed and the old build keeps serving", async (t) => {
    // Decided before the fault: a replica's node (kvm8 is the manager the watcher talks to) is stopped and
    // Swarm reschedules its replica onto the third node. The two live nodes then each hold a replica, and
    // the stack's start-first update with max_replicas_per_node 1 has nowhere to start a new task: the
    // deploy must be recorded failed at the deploy timeout, naming the service, and both replicas keep
    // running the previous build on the live nodes (start-first never stopped them).
    const victim = (await runningTasks()).map(([node]) => node).find((n) => n !== "kvm8") ?? "kvm2";
    const pid = Number((await fs.readFile(`/run/swarmhook-netns/${victim}/docker.pid`, "utf8")).trim());
    const stopped = performance.now();
    process.kill(pid, "SIGTERM");
    try {
      const nodeState = () => docker(["node", "inspect", victim, "-f", "{{.Status.State}}"], { host: KVM8 });
      await waitFor(`${victim} down`, async () => ((await nodeState()) === "down" ? true : undefined), 120_000, 1000);
      const rescheduled = await waitFor(
        "both replicas running on the live nodes",
        async () => {
          const tasks = await runningTasks();
          return tasks.length === 2 && tasks.every(([node]) => node !== victim) ? tasks : undefined;
        },
        120_000,
        1000,
      );
      assert.ok(rescheduled.every(([, img]) => img === `${WEB_REPO}:${current}`));
      t.diagnostic(`${victim} down and its replica rescheduled after ${seconds(performance.now() - stopped)}`);
      const pushed = performance.now();
      const r = await push(1, { sha: shas.nodeDown, committedAt: minutesAgo(20) });
      const rec = await recordOf(r.json.jobId as string, 240_000);
      t.diagnostic(`recorded ${rec.outcome} after ${seconds(performance.now() - pushed)}${rec.reason ? ` (${rec.reason})` : ""}`);
      assert.equal(rec.outcome, "failed", rec.reason);
      assert.match(rec.reason ?? "", /not converged within the deploy timeout: e2e_web/);
      const svc = rec.services.find((s) => s.name === WEB);
      assert.ok(svc && (svc.running < (svc.desired ?? 0) || svc.updateState === "updating"), JSON.stringify(svc));
      const tasks = await runningTasks();
      assert.equal(tasks.length, 2, JSON.stringify(tasks));
      assert.ok(
        tasks.every(([node, img]) => node !== victim && img === `${WEB_REPO}:${current}`),
        `the previous build on the live nodes: ${JSON.stringify(tasks)}`,
      );
    } finally {
      const back = performance.now();
      await netnsSwarm("up"); // restarts the stopped dockerd, which rejoins the swarm
      await waitFor(
        `${victim} Ready again`,
        async () => ((await docker(["node", "inspect", victim, "-f", "{{.Status.State}}"], { host: KVM8 })) === "ready" ? true : undefined),
        120_000,
        1000,
      );
      t.diagnostic(`${victim} back in the swarm after ${seconds(performance.now() - back)}`);
    }
  });
});
