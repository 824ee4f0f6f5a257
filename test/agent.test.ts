import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { checkHealth } from "../agent/verify/verify.ts";
import { WEB_REPO, buildWebImage } from "./helpers/images.ts";
import { publish, readRecords, startTestAgent, stackFile, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { randomSha } from "./helpers/jobs.ts";
import { freePort } from "./helpers/postgres.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { docker, waitFor } from "./helpers/swarm.ts";
import http from "node:http";
import { execFile } from "node:child_process";
import { mkdir, readFile, readdir, rm, symlink } from "node:fs/promises";
import os from "node:os";
import { createDockerRunner } from "../agent/docker.ts";
import { listJobs } from "../bin/jobs.ts";
import path from "node:path";
import { promisify } from "node:util";
import { onEnd } from "./helpers/cleanup.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { uniqueStack } from "./helpers/swarm.ts";

const run = promisify(execFile);
const stackName = () => `shtest-${randomBytes(3).toString("hex")}`;
const serviceImage = async (stack: string) =>
  docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
const runningImages = async (stack: string) =>
  (await docker(["service", "ps", `${stack}_web`, "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}"]))
    .split("\n")
    .filter((l) => / Running /.test(l))
    .map((l) => l.split(" ")[0]);
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

describe("agent on the real one-node swarm", () => {
  const stacks: string[] = [];
  after(async () => {
    for (const s of stacks) await docker(["stack", "rm", s]).catch(() => undefined);
  });

  describe("deploy, verify, roll back, go stale", () => {
    let t: TempSpool;
    let a: TestAgent;
    const stack = stackName();
    const [v1, v2, broken, old] = [randomSha(), randomSha(), randomSha(), randomSha()];
    before(async () => {
      stacks.push(stack);
      await Promise.all([buildWebImage(v1), buildWebImage(v2), buildWebImage(broken, { crash: true }), buildWebImage(old)]);
      t = await tempSpool();
      a = await startTestAgent(t.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    });
    after(async () => {
      await a.stop();
      await t.cleanup();
    });

    it("deploys a new image tag and records success with the services' state", async () => {
      const id1 = await publish(t.root, v1, { committedAt: minutesAgo(30) });
      const r1 = await waitForRecord(t.root, id1);
      assert.equal(r1.outcome, "success", r1.reason);
      // GitHub's push chain: the branch went v1 → old → v2; the push of `old` is delivered late (below)
      const id2 = await publish(t.root, v2, { committedAt: minutesAgo(20), before: old });
      const r2 = await waitForRecord(t.root, id2);
      assert.equal(r2.outcome, "success", r2.reason);
      assert.equal(await serviceImage(stack), `${WEB_REPO}:${v2}`);
      assert.deepEqual(await runningImages(stack), [`${WEB_REPO}:${v2}`, `${WEB_REPO}:${v2}`]);
      assert.deepEqual(
        r2.services.map((s) => [s.name, s.image, s.running, s.desired]),
        [[`${stack}_web`, `${WEB_REPO}:${v2}`, 2, 2]],
      );
      assert.equal(r2.attempts.length, 1);
      assert.deepEqual(r2.attempts[0]?.command.slice(0, 4), ["docker", "stack", "deploy", "-c"]);
      assert.ok(r2.attempts[0]?.command.includes("--with-registry-auth"));
      assert.ok(r2.timings.started && r2.timings.claimed && r2.timings.received);
      assert.ok(
        r2.warnings.some((w) => /digest/.test(w)),
        "a locally built image raises the digest warning, recorded",
      );
      assert.ok(
        a.logs.some((l) => l.msg === "docker" && typeof l.docker === "string"),
        "docker's output is logged line by line",
      );
    });

    it("records rolled_back when the new image crashes, and the service is back on the previous image", async () => {
      const id = await publish(t.root, broken, minutesAgo(10));
      const r = await waitForRecord(t.root, id);
      assert.equal(r.outcome, "rolled_back", r.reason);
      assert.equal(r.attempts[0]?.exitCode, 0, "docker stack deploy itself exited 0: the CLI's word is not the truth");
      assert.equal(await serviceImage(stack), `${WEB_REPO}:${v2}`);
      await waitFor("both replicas back on the previous image", async () => {
        const imgs = await runningImages(stack);
        return imgs.length === 2 && imgs.every((i) => i === `${WEB_REPO}:${v2}`) ? true : undefined;
      });
    });

    it("records a late push the branch has already moved past as stale and does not deploy it", async () => {
      // its commit date is the newest of all: a committer's date decides nothing
      const id = await publish(t.root, old, { committedAt: new Date(Date.now() + 3600_000).toISOString(), before: v1 });
      const r = await waitForRecord(t.root, id);
      assert.equal(r.outcome, "stale");
      assert.match(r.reason ?? "", /behind the deployed .*moved past it/);
      assert.equal(r.attempts.length, 0);
      assert.equal(await serviceImage(stack), `${WEB_REPO}:${v2}`);
    });
  });

  it("coalesces 20 jobs published during a deploy: at most 2 further deploys, the rest superseded", async () => {
    const stack = stackName();
    stacks.push(stack);
    const first = randomSha();
    const shas = Array.from({ length: 20 }, () => randomSha());
    const newest = shas[19] as string;
    await Promise.all([buildWebImage(first), buildWebImage(newest)]);
    const t = await tempSpool();
    const a = await startTestAgent(t.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    try {
      const firstId = await publish(t.root, first, minutesAgo(60));
      await waitFor(
        "the first deploy to start",
        async () => (a.logs.some((l) => l.msg === "deploy started") ? true : undefined),
        30_000,
        50,
      );
      const ids = [];
      // published in order, so the last is the newest received; their commit dates are shuffled and decide nothing
      for (let i = 0; i < 20; i++)
        ids.push(await publish(t.root, shas[i] as string, { committedAt: minutesAgo(Math.floor(Math.random() * 60)) }));
      for (const id of [firstId, ...ids]) await waitForRecord(t.root, id);
      const records = await readRecords(t.root);
      assert.equal(records.length, 21, "every job accounted for");
      const deploys = records.filter((r) => r.attempts.length > 0);
      assert.ok(deploys.length <= 3, `${deploys.length} deploys`);
      assert.ok(
        records.every((r) => r.outcome === "success" || r.outcome === "superseded"),
        records.map((r) => `${r.outcome}: ${r.reason}`).join("\n"),
      );
      assert.equal(records.find((r) => r.job?.sha === newest)?.outcome, "success", "the newest delivery won");
      assert.equal(await serviceImage(stack), `${WEB_REPO}:${newest}`);
      assert.ok(records.filter((r) => r.outcome === "superseded").every((r) => r.supersededBy));
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });

  it("fails an invalid stack file at once, before any deploy, naming docker's complaint", async () => {
    const t = await tempSpool();
    const a = await startTestAgent(t.root, { STACK_FILE: stackFile("invalid"), STACK_NAME: stackName() });
    try {
      const r = await waitForRecord(t.root, await publish(t.root, randomSha()));
      assert.equal(r.outcome, "failed");
      assert.equal(r.attempts.length, 0, "the stack is rendered first: docker stack deploy never ran");
      assert.match(r.reason ?? "", /the stack file could not be rendered: stack config failed \(exit 1\): .*replicas/);
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });

  it("retries a deploy whose daemon goes away after the engine check, with backoff, then fails naming docker's line", async () => {
    // the engine check (docker version, docker info) reaches the real engine; `docker stack deploy`
    // reaches a socket nobody serves: the real CLI's real failure, on the deploy path only
    const t = await tempSpool();
    const real = createDockerRunner();
    const gone = createDockerRunner({ env: { DOCKER_HOST: "unix:///run/swarmhook-no-such-daemon.sock" } });
    const a = await startTestAgent(
      t.root,
      { STACK_FILE: stackFile("web"), STACK_NAME: stackName(), DEPLOY_RETRIES: "2" },
      {},
      {
        run: (args, o) => gone.run(args, o),
        capture: (args, o) => real.capture(args, o),
      },
    );
    try {
      const r = await waitForRecord(t.root, await publish(t.root, randomSha()));
      assert.equal(r.outcome, "failed");
      assert.equal(r.attempts.length, 3);
      assert.ok(r.attempts.every((x) => /Cannot connect to the Docker daemon/.test(x.outputTail)));
      const retries = a.logs.filter((l) => l.msg.startsWith("deploy failed transiently"));
      assert.deepEqual(
        retries.map((l) => l.retryInMs),
        [100, 200],
      );
      assert.match(
        r.reason ?? "",
        /after 3 attempts: Cannot connect to the Docker daemon at unix:\/\/\/run\/swarmhook-no-such-daemon\.sock/,
      );
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });

  it("waits while the Docker engine does not answer: the job stays in new/, no record; deploys once it answers (same process)", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    const sock = path.join(os.tmpdir(), `swarmhook-engine-${randomUUID()}.sock`);
    onEnd(t, () => rm(sock, { force: true }));
    // the problem is logged again every 3 s here (a minute in production), polls every 200 ms
    const dockerEnv = { DOCKER_HOST: `unix://${sock}` };
    const a = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack }, dockerEnv, undefined, {
      engineLogEveryMs: 3000,
    });
    onEnd(t, () => a.stop());
    const id = await publish(s.root, sha);
    const since = Date.now();
    await new Promise((r) => setTimeout(r, 10_000));
    assert.deepEqual(await readdir(path.join(s.root, "new")), [`${id}.json`], "still waiting in new/");
    assert.deepEqual(await readRecords(s.root), [], "nothing failed");
    const waits = a.logs.filter((l) => l.msg === "waiting for the Docker engine: jobs stay in new/");
    // 10 s of waiting: at 0, 3, 6, 9 s — neither once ever (1) nor once a poll (about 50)
    assert.ok(waits.length >= 3 && waits.length <= 4, `${waits.length} lines in ${Date.now() - since} ms`);
    const gaps = waits.slice(1).map((w, i) => w.at - (waits[i]?.at ?? 0));
    assert.ok(
      gaps.every((g) => g >= 2900 && g < 4500),
      `a line every 3 s: ${gaps.join(", ")} ms apart`,
    );
    assert.match(String(waits[0]?.problem), new RegExp(`Cannot connect to the Docker daemon at unix://${sock}`));
    assert.match(
      await listJobs(s.root, 5),
      /^watcher: NOT DEPLOYING since .*Cannot connect to the Docker daemon.*fix: systemctl start docker/m,
    );
    const waiting = await a.metrics.registry.metrics();
    assert.match(waiting, /^swarmhook_engine_up 0$/m);
    assert.match(waiting, /^swarmhook_jobs_pending 1$/m);
    await symlink("/var/run/docker.sock", sock); // the engine is back
    const r = await waitForRecord(s.root, id);
    assert.equal(r.outcome, "success", r.reason);
    assert.ok(a.logs.some((l) => l.msg.startsWith("Docker engine available again")));
    // the counter moves just after the record is written (count once recorded): read it once it has
    const counted = new RegExp(`^swarmhook_deployments_total\\{stack="${stack}",outcome="success"\\} 1$`, "m");
    const after = await waitFor(
      "the deploy counted",
      async () => {
        const text = await a.metrics.registry.metrics();
        return counted.test(text) ? text : undefined;
      },
      5000,
      50,
    );
    assert.match(after, /^swarmhook_engine_up 1$/m);
    assert.doesNotMatch(await listJobs(s.root, 5), /NOT DEPLOYING/);
  });

  it("an image with no registry host that the engine holds deploys by reference at once, warning, under DIGEST_POLICY=fail too", async () => {
    const stack = stackName();
    stacks.push(stack);
    const v1 = randomSha();
    await buildWebImage(v1);
    const t = await tempSpool();
    const a = await startTestAgent(t.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack, DIGEST_POLICY: "fail", IMAGE_WAIT_S: "900" });
    try {
      const r = await waitForRecord(t.root, await publish(t.root, v1, minutesAgo(2)));
      assert.equal(r.outcome, "success", r.reason);
      assert.ok(
        r.warnings.some((w) => w.includes(`image ${WEB_REPO}:${v1} not pinned to a digest (held by the engine`)),
        JSON.stringify(r.warnings),
      );
      assert.deepEqual(r.release?.images, [{ service: "web", image: `${WEB_REPO}:${v1}`, pinned: false }]);
      assert.ok(
        a.logs.some((l) => l.level === 40 && l.msg.includes("not pinned to a digest")),
        "logged as a warning",
      );
      // no registry was asked: swarmhook-test/web names no registry host, and Docker Hub is not where it lives
      assert.doesNotMatch(await a.metrics.registry.metrics(), /swarmhook_registry_requests_total\{/);
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });

  it("records a job that matches no configured stack as invalid", async () => {
    const t = await tempSpool();
    const dir = t.root;
    const { writeFile } = await import("node:fs/promises");
    const cfg = `${dir}/agent.yaml`;
    await writeFile(cfg, `stacks:\n  - name: other\n    file: ${stackFile("web")}\n    repository: acme/other\n    branches: [main]\n`);
    const a = await startTestAgent(t.root, { AGENT_CONFIG: cfg });
    try {
      const r = await waitForRecord(t.root, await publish(t.root, randomSha()));
      assert.equal(r.outcome, "invalid");
      assert.match(r.reason ?? "", /no stack is configured for Codertocat\/Hello-World/);
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });

  it("waits for HEALTH_URL to report the deployed commit, and fails a deploy whose health keeps naming another", async () => {
    const stack = stackName();
    stacks.push(stack);
    const sha = randomSha();
    await buildWebImage(sha);
    const port = await freePort();
    const t = await tempSpool();
    const a = await startTestAgent(
      t.root,
      {
        STACK_FILE: stackFile("web-health"),
        STACK_NAME: stack,
        HEALTH_URL: `http://127.0.0.1:${port}/health`,
        HEALTH_TIMEOUT_S: "20",
        ON_FAILURE: "stay",
      },
      { WEB_PORT: String(port) },
    );
    try {
      const r = await waitForRecord(t.root, await publish(t.root, sha));
      assert.equal(r.outcome, "success", r.reason);
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(((await res.json()) as { commit: string }).commit, sha);
      // the next commit's image converges, but its /health still names the old commit: the health
      // URL is what tells, so the deploy fails naming it
      const next = randomSha();
      await buildWebImage(next, { reports: sha });
      const bad = await waitForRecord(t.root, await publish(t.root, next), 90_000);
      assert.equal(bad.outcome, "failed", bad.reason);
      assert.match(bad.reason ?? "", new RegExp(`127\\.0\\.0\\.1:${port}/health not healthy within 20 s: .*${sha.slice(0, 7)}`));
    } finally {
      await a.stop();
      await t.cleanup();
    }
  });
});

// The paths test/deploy.test.ts walks in virtual time with a scripted docker, here on the real
// engine (the backoff cap, a minute per try, stays virtual-time only).
describe("deploy failures on the real engine (the scripted paths' twins)", () => {
  it("a permanent deploy failure (a network that does not exist) is not retried, naming docker's line", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    const a = await startTestAgent(s.root, { STACK_FILE: stackFile("missing-network"), STACK_NAME: stack, DEPLOY_RETRIES: "3" });
    onEnd(t, () => a.stop());
    const r = await waitForRecord(s.root, await publish(s.root, sha));
    assert.equal(r.outcome, "failed", r.reason);
    assert.equal(r.attempts.length, 1, "a permanent failure is tried once");
    assert.match(r.reason ?? "", /swarmhook-test-no-such-network/);
  });

  it("the deadline reached mid-verification fails the deploy with the services' state", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    const a = await startTestAgent(s.root, { STACK_FILE: stackFile("unplaceable"), STACK_NAME: stack, DEPLOY_TIMEOUT_S: "8" });
    onEnd(t, () => a.stop());
    const r = await waitForRecord(s.root, await publish(s.root, sha), 60_000);
    assert.equal(r.outcome, "failed", r.reason);
    assert.match(r.reason ?? "", new RegExp(`not converged within the deploy timeout: ${stack}_web`));
    assert.equal(r.attempts.length, 1, "docker stack deploy itself succeeded");
    assert.deepEqual(
      r.services.map((x) => [x.name, x.running, x.desired]),
      [[`${stack}_web`, 0, 1]],
    );
  });

  it("a health URL that keeps answering 503 fails the deploy once HEALTH_TIMEOUT_S has passed, saying so", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    const srv = http.createServer((_req, res) => res.writeHead(503).end("starting"));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    onEnd(t, () => new Promise<void>((r) => srv.close(() => r())));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/health`;
    const a = await startTestAgent(s.root, {
      STACK_FILE: stackFile("web"),
      STACK_NAME: stack,
      HEALTH_URL: url,
      HEALTH_TIMEOUT_S: "3",
      ON_FAILURE: "stay",
    });
    onEnd(t, () => a.stop());
    const r = await waitForRecord(s.root, await publish(s.root, sha), 90_000);
    assert.equal(r.outcome, "failed", r.reason);
    assert.match(r.reason ?? "", new RegExp(`${url.replace(/[.]/g, "\\.")} not healthy within 3 s: HTTP 503$`));
  });
});

describe("an agent facing a jammed spool", () => {
  it("quarantines or skips what is not a job (a directory and a FIFO in work/, a FIFO in state/, a link, a directory and a FIFO in new/), naming each, and still deploys", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [v1, v2] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(v1), buildWebImage(v2)]);
    const planted = {
      workDir: `${randomUUID()}.json`,
      workFifo: `${randomUUID()}.json`,
      newDir: `${randomUUID()}.json`,
      newLink: `${randomUUID()}.json`,
      newFifo: `${randomUUID()}.json`,
    };
    await mkdir(path.join(s.root, "work", planted.workDir));
    await run("mkfifo", [path.join(s.root, "work", planted.workFifo)]); // a read would block forever
    await mkdir(path.join(s.root, "new", planted.newDir));
    await symlink("/dev/zero", path.join(s.root, "new", planted.newLink));
    await run("mkfifo", [path.join(s.root, "new", planted.newFifo)]);
    await run("mkfifo", [path.join(s.root, "state", `${stack}.json`)]);
    const a = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    onEnd(t, () => a.stop());
    const r1 = await waitForRecord(s.root, await publish(s.root, v1));
    assert.equal(r1.outcome, "success", r1.reason);
    const r2 = await waitForRecord(s.root, await publish(s.root, v2, { before: v1 }));
    assert.equal(r2.outcome, "success", r2.reason);
    const said = a.logs.map((l) => JSON.stringify(l)).join("\n");
    for (const entry of [
      `work/${planted.workDir}`,
      `work/${planted.workFifo}`,
      `new/${planted.newDir}`,
      `new/${planted.newLink}`,
      `new/${planted.newFifo}`,
      `state/${stack}.json`,
    ])
      assert.ok(said.includes(entry), `${entry} named in the log`);
    const invalid = (await readRecords(s.root))
      .filter((r) => r.outcome === "invalid")
      .map((r) => r.reason)
      .sort();
    // what the API's side (new/) held is removed, never moved where its writer could still reach it
    assert.deepEqual(invalid, [
      "a symbolic link, not a job file (removed: a symbolic link, nothing kept)",
      "not a regular file (FIFO)", // work/'s FIFO: opened without blocking, never read
      "not a regular file (directory)",
      "not a regular file (removed: a directory, nothing kept)",
      "not a regular file (removed: a special file, nothing kept)", // new/'s FIFO
      "state file: not a regular file (FIFO)",
    ]);
    const state = JSON.parse(await readFile(path.join(s.root, "state", `${stack}.json`), "utf8")) as { sha: string };
    assert.equal(state.sha, v2, "the state file is a regular file again, written by the deploy");
  });

  it("deploys a commit dated 2099, and the ordinary push after it too", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [future, next] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(future), buildWebImage(next)]);
    const a = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    onEnd(t, () => a.stop());
    const r1 = await waitForRecord(s.root, await publish(s.root, future, { committedAt: "2099-12-31T23:59:59Z" }));
    assert.equal(r1.outcome, "success", r1.reason);
    const r2 = await waitForRecord(s.root, await publish(s.root, next, { committedAt: new Date().toISOString(), before: future }));
    assert.equal(r2.outcome, "success", r2.reason);
    assert.equal(await serviceImage(stack), `${WEB_REPO}:${next}`);
  });
});

describe("checkHealth", () => {
  it("passes once the commit matches and fails with the reason when it never does", async () => {
    let commit = "0".repeat(40);
    const srv = http.createServer((_req, res) => res.end(JSON.stringify({ commit })));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/health`;
    try {
      const sha = "a".repeat(40);
      setTimeout(() => (commit = sha), 300);
      assert.equal(await checkHealth(url, sha, 5000, { everyMs: 100 }), null);
      const why = await checkHealth(url, "b".repeat(40), 500, { everyMs: 100 });
      assert.match(why ?? "", /reports commit aaaaaaaaaaaa, not bbbbbbbbbbbb/);
    } finally {
      srv.close();
    }
  });
});
