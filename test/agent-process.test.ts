import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { ensureSpool, openSpool } from "../spool/index.ts";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { mountBindfs } from "./helpers/bindfs.ts";
import { buildWebImage, WEB_REPO } from "./helpers/images.ts";
import { makeJob, randomSha } from "./helpers/jobs.ts";
import { freePort } from "./helpers/postgres.ts";
import { assertPrometheusText } from "./helpers/prometheus.ts";
import { spawnTs, waitForLine, type Proc } from "./helpers/proc.ts";
import { tempSpool } from "./helpers/spool.ts";
import { docker, waitFor } from "./helpers/swarm.ts";

const startAgentProcess = (env: Record<string, string>): Proc => spawnTs("agent/main.ts", [], { POLL_INTERVAL_MS: "200", ...env });
const logged = (p: Proc, msg: string) => waitForLine(p, `"msg":"${msg}"`, undefined, 60_000);

describe("the webhook-watcher process", () => {
  const stacks: string[] = [];
  after(async () => {
    for (const s of stacks) await docker(["stack", "rm", s]).catch(() => undefined);
  });

  it("finishes a job after being SIGKILLed mid-deploy and restarted", async () => {
    const stack = `shtest-${randomBytes(3).toString("hex")}`;
    stacks.push(stack);
    const sha = randomSha();
    await buildWebImage(sha);
    const t = await tempSpool();
    const env = { SPOOL_DIR: t.root, STACK_FILE: stackFile("web"), STACK_NAME: stack };
    try {
      const first = startAgentProcess(env);
      const id = await publish(t.root, sha);
      await logged(first, "deploy started");
      first.child.kill("SIGKILL");
      await first.exited;
      assert.deepEqual(await fs.readdir(path.join(t.root, "work")), [`${id}.json`], "the job waits in work/");
      assert.deepEqual(await readRecords(t.root), []);
      const second = startAgentProcess(env);
      try {
        const r = await waitForRecord(t.root, id);
        assert.equal(r.outcome, "success", r.reason);
        assert.ok(second.lines.some((l) => l.includes("left in work/ by a dead run")));
        assert.equal(
          await docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]),
          `${WEB_REPO}:${sha}`,
        );
      } finally {
        second.child.kill("SIGTERM");
        assert.equal(await second.exited, 0);
      }
    } finally {
      await t.cleanup();
    }
  });

  it("on SIGTERM mid-deploy, finishes and records the deploy, then exits 0", async () => {
    const stack = `shtest-${randomBytes(3).toString("hex")}`;
    stacks.push(stack);
    const sha = randomSha();
    await buildWebImage(sha);
    const t = await tempSpool();
    try {
      const p = startAgentProcess({ SPOOL_DIR: t.root, STACK_FILE: stackFile("web"), STACK_NAME: stack });
      const id = await publish(t.root, sha);
      await logged(p, "deploy started");
      p.child.kill("SIGTERM");
      assert.equal(await p.exited, 0);
      const records = await readRecords(t.root);
      assert.equal(records.find((r) => r.jobId === id)?.outcome, "success", "recorded before the process exited");
      assert.deepEqual(await fs.readdir(path.join(t.root, "work")), []);
    } finally {
      await t.cleanup();
    }
  });

  it("refuses a bad configuration naming the variable (exit 1)", async () => {
    const p = startAgentProcess({ SPOOL_DIR: "/tmp", STACK_FILE: "x.yaml", STACK_NAME: "bad name!" });
    assert.equal(await p.exited, 1);
    assert.match(p.lines.join(""), /STACK_NAME/);
  });
});

describe("the watcher's /metrics (METRICS_ADDR)", () => {
  it("serves Prometheus text that counts a success and a failure, the engine up, the version", async () => {
    const t = await tempSpool();
    const port = await freePort();
    const cfg = path.join(t.root, "stacks.yaml");
    const ok = `shmetrics-${randomBytes(3).toString("hex")}`;
    await fs.writeFile(
      cfg,
      `stacks:\n  - name: ${ok}\n    file: ${stackFile("web")}\n    branches: [main]\n` +
        `  - name: shbroken\n    file: ${stackFile("invalid")}\n    branches: [broken]\n`,
    );
    const p = spawnTs("agent/main.ts", [], {
      SPOOL_DIR: t.root,
      AGENT_CONFIG: cfg,
      POLL_INTERVAL_MS: "200",
      METRICS_ADDR: `127.0.0.1:${port}`,
    });
    try {
      await waitForLine(p, '"serving /metrics"', undefined, 30_000);
      const sha = randomSha();
      await buildWebImage(sha);
      const good = await publish(t.root, sha);
      const bad = await publish(t.root, randomSha(), { ref: "refs/heads/broken" });
      assert.equal((await waitForRecord(t.root, good)).outcome, "success");
      assert.equal((await waitForRecord(t.root, bad)).outcome, "failed");
      // a job is counted just after its record is written: scrape once both are counted
      const res = await waitFor(
        "both outcomes counted",
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/metrics`);
          const body = await r.text();
          return /^swarmhook_deployments_total\{stack="shbroken",outcome="failed"\} 1$/m.test(body) ? { r, body } : undefined;
        },
        5000,
        50,
      );
      assert.equal(res.r.status, 200);
      assert.match(res.r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = res.body;
      assertPrometheusText(text);
      const has = (re: string) => assert.match(text, new RegExp(`^${re}$`, "m"), re);
      has(`swarmhook_deployments_total\\{stack="${ok}",outcome="success"\\} 1`);
      has(`swarmhook_deployments_total\\{stack="shbroken",outcome="failed"\\} 1`);
      has(`swarmhook_deployment_duration_seconds_count\\{stack="${ok}"\\} 1`);
      has(`swarmhook_last_success_timestamp_seconds\\{stack="${ok}"\\} \\d+(\\.\\d+)?`);
      has("swarmhook_engine_up 1");
      has("swarmhook_jobs_pending 0");
      has('swarmhook_info\\{version="\\d+\\.\\d+\\.\\d+"\\} 1');
      assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
    } finally {
      p.child.kill("SIGTERM");
      await p.exited;
      await docker(["stack", "rm", ok]).catch(() => undefined);
      await t.cleanup();
    }
  });
});

describe("the watcher's log format", () => {
  const missing = () => path.join(os.tmpdir(), `swarmhook-nospool-${randomBytes(4).toString("hex")}`);
  async function firstLines(env: Record<string, string>): Promise<string> {
    const p = spawnTs("agent/main.ts", [], { SPOOL_DIR: missing(), STACK_FILE: stackFile("web"), STACK_NAME: "shlog", ...env });
    await waitForLine(p, "spool unavailable", undefined, 30_000);
    p.child.kill("SIGTERM");
    await p.exited;
    return p.out();
  }

  it("writes JSON lines when stdout is not a terminal (journald), and readable lines with LOG_FORMAT=pretty, colourless when piped", async () => {
    const json = (await firstLines({})).split("\n").filter(Boolean);
    assert.ok(json.length >= 2);
    for (const line of json) assert.equal((JSON.parse(line) as { service: string }).service, "webhook-watcher");
    const pretty = await firstLines({ LOG_FORMAT: "pretty" });
    assert.match(pretty, /INFO.*watcher starting/);
    assert.match(pretty, /ERROR.*spool unavailable; still polling/);
    assert.doesNotMatch(pretty, /^\{/m, "no JSON");
    assert.ok(!pretty.includes("\u001b"), "no colour codes in a pipe");
  });

  it("refuses an unknown LOG_FORMAT naming it", async () => {
    const p = spawnTs("agent/main.ts", [], { SPOOL_DIR: "/tmp", STACK_FILE: "x.yaml", STACK_NAME: "x", LOG_FORMAT: "xml" });
    assert.equal(await p.exited, 1);
    assert.match(p.err(), /LOG_FORMAT must be auto, pretty or json/);
  });
});

describe("a spool that is missing when the watcher starts", () => {
  it("is polled until it appears, and what a dead run left in work/ is then finished", async () => {
    const root = path.join(os.tmpdir(), `swarmhook-late-${randomBytes(4).toString("hex")}`);
    const a = await startTestAgent(root, { STACK_FILE: stackFile("invalid"), STACK_NAME: "shlate" });
    try {
      await waitFor("the spool problem logged", async () => a.logs.find((l) => l.msg === "spool unavailable; still polling"), 10_000, 50);
      // the mount appears, holding a job a dead run had claimed: it sits in work/, not new/
      await fs.mkdir(path.join(root, "work"), { recursive: true });
      const job = makeJob();
      await fs.writeFile(path.join(root, "work", `${job.deliveryId}.json`), JSON.stringify(job));
      const r = await waitForRecord(root, job.deliveryId, 30_000);
      assert.equal(r.outcome, "failed", "deployed (the stack file is invalid on purpose) and recorded");
      assert.ok(a.logs.some((l) => l.msg === "spool available again"));
      assert.ok(a.logs.some((l) => l.msg.startsWith("job left in work/")));
    } finally {
      await a.stop();
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe("pickup through a bindfs mount (the NFS case)", () => {
  it("sees a job written underneath the mount by polling (no inotify event arrives)", async () => {
    const t = await tempSpool();
    const mount = await mountBindfs(t.root);
    const POLL = 500;
    // an invalid stack file fails at once: this test measures pickup, not deploys
    const a = await startTestAgent(mount.mountpoint, {
      STACK_FILE: stackFile("invalid"),
      STACK_NAME: "shpickup",
      POLL_INTERVAL_MS: String(POLL),
    });
    try {
      await ensureSpool(openSpool(t.root));
      const delays: number[] = [];
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 137 * i)); // land at different points of the poll cycle
        const published = Date.now();
        const id = await publish(t.root, randomSha()); // written to the underlying directory, as nfsd would
        const claimed = await waitFor(
          "the job claimed",
          async () => a.logs.find((l) => l.msg === "job claimed" && l.jobId === id),
          10_000,
          10,
        );
        delays.push(claimed.at - published);
        await waitForRecord(t.root, id);
      }
      // seen by polling, with no inotify event from the mount (a watcher waiting for one would time
      // out above); the bound is loose on purpose: pickup latency is bench/pickup's (p99 vs its target)
      for (const d of delays) assert.ok(d <= 10 * POLL, `picked up after ${d} ms (a poll is ${POLL} ms)`);
    } finally {
      await a.stop();
      await mount.unmount();
      await t.cleanup();
    }
  });
});
