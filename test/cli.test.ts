import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { promisify } from "node:util";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { claimJob, finishJob, publishJob } from "../spool/index.ts";
import { waitForRecord } from "./helpers/agent.ts";
import { makeJob, randomSha } from "./helpers/jobs.ts";
import { freePort } from "./helpers/postgres.ts";
import { ROOT, spawnTs } from "./helpers/proc.ts";
import { hostEngineState, startOwnEngine } from "./helpers/own-engine.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, waitFor } from "./helpers/swarm.ts";

const run = promisify(execFile);

function cli(args: string[], env: Record<string, string> = {}) {
  const p = spawnTs("bin/swarmhook.ts", args, env);
  return { child: p.child, done: p.exited.then((code) => ({ code, out: p.out(), err: p.err() })) };
}

describe("npm start's set-up (swarmhook local)", () => {
  it("gives up by itself, naming the socket and the fix, when DOCKER_HOST names an engine nobody serves", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-local-"));
    const sock = path.join(dir, "nobody.sock");
    try {
      const r = await run("npm", ["start", "--silent", "--", "--dir", dir], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", DOCKER_HOST: `unix://${sock}` },
        timeout: 180_000, // a hang (waiting for that engine) is killed here, and fails below
      }).then(
        () => ({ code: 0, err: "", killed: false }),
        (e: { code: number; stderr: string; killed?: boolean; signal?: string | null }) => ({
          code: e.code,
          err: e.stderr,
          killed: Boolean(e.killed || e.signal),
        }),
      );
      assert.equal(r.killed, false, "it exited on its own rather than waiting for the engine");
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, new RegExp(`Cannot connect to the Docker daemon at unix://${sock}.*DOCKER_HOST=unix://${sock}`));
      assert.match(r.err, /unset DOCKER_HOST|test-env\.sh --demo/);
      assert.equal(r.err.trim().split("\n").length, 1, "one line");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("brings back a stopped engine, a left swarm and a removed demo image, one line a step (an engine of its own; the host's as it was)", async (t) => {
    const hostBefore = await hostEngineState();
    const own = await startOwnEngine(t);
    await own.docker(["swarm", "leave", "--force"]);
    await own.docker(["image", "rm", "--force", "swarmhook-test/busybox:latest"]);
    await own.stopEngine();
    const r = await cli(["local", "--setup"], own.env).done;
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /swarmhook local: .*setting this machine up/);
    assert.match(r.out, /^test-env: dockerd +started/m);
    assert.match(r.out, /^test-env: swarm +initialised a one-node swarm/m);
    assert.match(r.out, /^test-env: images +built: swarmhook-test\/busybox:latest/m);
    assert.equal(await own.docker(["info", "-f", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"]), "active true");
    await own.docker(["image", "inspect", "swarmhook-test/busybox:latest"]);
    const again = await cli(["local", "--setup"], own.env).done;
    assert.match(again.out, /the Docker engine, a swarm manager and the demo image are here/);
    assert.equal(await hostEngineState(), hostBefore, "the host's dockerd, swarm and images are as they were");
  });
});

describe("swarmhook local (the quick start's main job)", () => {
  const stack = `shlocal-${process.pid}`;
  after(async () => {
    await docker(["stack", "rm", stack]).catch(() => undefined);
  });

  it("serves the API and deploys a signed push to this machine's swarm, verified", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-local-"));
    const port = await freePort();
    const local = cli(["local", "--dir", dir], { PORT: String(port), STACK_NAME: stack, POLL_INTERVAL_MS: "200" });
    try {
      await waitFor("the API", async () => ((await fetch(`http://127.0.0.1:${port}/health`)).ok ? true : undefined), 30_000, 200);
      const sha = randomSha();
      const sent = await cli([
        "send",
        "--url",
        `http://127.0.0.1:${port}/api/webhook/github`,
        "--secret-file",
        path.join(dir, "webhook-secret"),
        "--repository",
        "local/demo",
        "--sha",
        sha,
      ]).done;
      assert.equal(sent.code, 0, sent.err);
      const jobId = (JSON.parse(sent.out.slice(4)) as { jobId: string }).jobId;
      const rec = await waitForRecord(path.join(dir, "spool"), jobId, 90_000);
      assert.equal(rec.outcome, "success", rec.reason);
      const env = await docker(["service", "inspect", `${stack}_hello`, "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"]);
      assert.ok(env.includes(`DEPLOY_SHA=${sha}`));
      const jobs = await cli(["jobs", "--spool", path.join(dir, "spool")]).done;
      assert.match(jobs.out, new RegExp(`success\\s+${stack}\\s+${sha.slice(0, 12)}`));
      // right after npm start, with no SPOOL_DIR anywhere: jobs and doctor read the local set-up
      const localJobs = await cli(["jobs", "--dir", dir]).done;
      assert.equal(localJobs.code, 0, localJobs.err);
      assert.match(localJobs.err, /the local set-up in .*\(swarmhook local\)/);
      assert.match(localJobs.out, new RegExp(`success\\s+${stack}\\s+${sha.slice(0, 12)}`));
      const doctor = await cli(["doctor", "--dir", dir, "--json"], { STACK_NAME: stack }).done;
      assert.doesNotMatch(doctor.err, /SPOOL_DIR is required|invalid configuration/);
      const checks = JSON.parse(doctor.out) as { check: string; ok: boolean | null; detail: string }[];
      assert.equal(checks.find((c) => c.check === `stack file of ${stack}`)?.ok, true, doctor.out);
      const dirs = checks.find((c) => c.check === "spool directories");
      assert.equal(dirs?.ok, true, doctor.out);
      assert.match(dirs?.detail ?? "", new RegExp(`in ${path.join(dir, "spool")} \\(the local set-up`));
      assert.equal(checks.find((c) => c.check === "spool mount")?.ok, null, "no NFS mount to find in the local set-up");
      assert.equal(checks.filter((c) => c.ok === false).length, doctor.code, "exit status = failed checks");
      assert.equal((await readFile(path.join(dir, "webhook-secret"), "utf8")).trim().length, 64);
      // the history page of the quick start, behind the generated token
      const token = (await readFile(path.join(dir, "history-token"), "utf8")).trim();
      assert.equal((await fetch(`http://127.0.0.1:${port}/deployments`)).status, 401);
      const page = await fetch(`http://127.0.0.1:${port}/api/deployments/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(((await page.json()) as { deployment: { status: string } }).deployment.status, "success");
    } finally {
      local.child.kill("SIGTERM");
      assert.equal((await local.done).code, 0);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("swarmhook enqueue and --help", () => {
  it("queues a manual job the schema accepts, and refuses a short SHA", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-enq-"));
    try {
      const sha = randomSha();
      const r = await cli(["enqueue", "--spool", dir, "--sha", sha, "--repository", "acme/app"]).done;
      assert.equal(r.code, 0, r.err);
      const jobId = /queued (\S+)/.exec(r.out)?.[1] ?? "";
      const job = JSON.parse(await readFile(path.join(dir, "new", `${jobId}.json`), "utf8")) as { event: string; sha: string };
      assert.deepEqual([job.event, job.sha], ["manual", sha]);
      const bad = await cli(["enqueue", "--spool", dir, "--sha", "abc"]).done;
      assert.equal(bad.code, 2);
      const help = await cli(["--help"]).done;
      for (const word of ["local", "send", "enqueue", "jobs", "kvm8"]) assert.ok(help.out.includes(word), word);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("swarmhook jobs", () => {
  it("lists pending jobs and the newest outcomes, with terminal control characters stripped", async (t) => {
    const s = await useTempSpool(t);
    const job = makeJob();
    await publishJob(s.spool, job);
    const claimed = await claimJob(s.spool, `${job.deliveryId}.json`);
    assert.equal(claimed.status, "claimed");
    const now = new Date().toISOString();
    const reason = "docker said \u001b[31mred\u001b[0m\u0007 and \u001b]0;owned\u0007 bye\nsecond line";
    const timings = { received: now, claimed: now, started: now, finished: now };
    await finishJob(s.spool, {
      outcome: "failed",
      reason,
      jobId: job.deliveryId,
      job,
      stack: "app",
      timings,
      attempts: [],
      services: [],
      warnings: [],
    });
    const pending = makeJob();
    await publishJob(s.spool, pending);
    const r = await cli(["jobs", "--spool", s.root]).done;
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(`new/: ${pending.deliveryId}.json`));
    assert.match(r.out, /last 1 finished:\n\S+\s+failed\s+app\s+/);
    assert.ok(r.out.includes("docker said red and  bye second line"), r.out);
    // eslint-disable-next-line no-control-regex -- the assertion is about control characters
    assert.doesNotMatch(r.out, /[\u0000-\u0008\u000b-\u001f\u007f]/, "nothing but text and newlines reaches the terminal");
  });
});
