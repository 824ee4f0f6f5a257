// Ordered deploys on the real one-node swarm: a `migrate` replicated-job (stage 0), `api` (stage 1)
// and `web` (stage 2). The order is read from Swarm's own timestamps (the job task's completion,
// each service's UpdateStatus), never from the watcher's log; a failed migration and a stage Swarm
// rolled back leave the later stages' Version.Index where it was.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { jobSpecHash, stageDoc, stagesOf, StageError } from "../agent/prepare/stages.ts";
import { cleanLogLine } from "../agent/verify/job.ts";
import { publish, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { docker } from "./helpers/swarm.ts";
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { ROOT, spawnDist } from "./helpers/proc.ts";

/** The test's stack file: `migration` is the job's shell script (stage 0 unless told); api (1) and web (2) run IMAGE_TAG. */
const stackYaml = (migration: string, migrateStage = 0) =>
  [
    'version: "3.8"',
    "services:",
    "  migrate:",
    "    image: swarmhook-test/busybox:latest",
    `    command: ["sh", "-c", ${JSON.stringify(migration)}]`,
    "    deploy:",
    "      mode: replicated-job",
    "      restart_policy: { condition: none }",
    `      labels: { swarmhook.stage: "${migrateStage}", swarmhook.timeout: "60" }`,
    ...["api", "web"].flatMap((svc, i) => [
      `  ${svc}:`,
      "    image: swarmhook-test/web:${IMAGE_TAG}",
      "    deploy:",
      "      replicas: 1",
      "      endpoint_mode: dnsrr",
      `      labels: { swarmhook.stage: "${i + 1}" }`,
      "      update_config: { parallelism: 1, delay: 0s, failure_action: rollback, monitor: 2s, order: start-first }",
      "      rollback_config: { parallelism: 0, monitor: 1s, order: stop-first }",
      "      restart_policy: { condition: any, delay: 1s }",
    ]),
    "",
  ].join("\n");

interface UpdateStatus {
  State?: string;
  StartedAt?: string;
  CompletedAt?: string;
}
const inspect = async (stack: string, svc: string) =>
  JSON.parse(await docker(["service", "inspect", `${stack}_${svc}`, "--format", "{{json .}}"])) as {
    Version: { Index: number };
    UpdateStatus?: UpdateStatus;
    JobStatus?: { JobIteration?: { Index?: number } };
  };

/** When the job's run of its current iteration completed, by its task's own status timestamp. */
async function jobCompletedAt(stack: string): Promise<number> {
  const svc = await inspect(stack, "migrate");
  const iteration = svc.JobStatus?.JobIteration?.Index ?? 0;
  const ids = (await docker(["service", "ps", `${stack}_migrate`, "-q", "--no-trunc"])).split("\n").filter(Boolean);
  const tasks = JSON.parse(await docker(["inspect", "--type", "task", ...ids])) as {
    JobIteration?: { Index?: number };
    Status: { State: string; Timestamp: string };
  }[];
  const done = tasks.find((t) => (t.JobIteration?.Index ?? 0) === iteration && t.Status.State === "complete");
  assert.ok(done, `a completed task of iteration ${iteration}`);
  return Date.parse(done.Status.Timestamp);
}

/** `swarmhook follow` (the compiled CLI) under tmux, its screen sampled until `done()`, which returns the screens. */
async function followInTmux(id: string, root: string, stack: string) {
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
    `node ${ROOT}/dist/bin/swarmhook.js follow ${id} --spool ${root}; echo EXIT=$?; sleep 60`,
  ]);
  const capture = async () => (await execa("tmux", ["capture-pane", "-p", "-t", session])).stdout;
  const screens: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      screens.push(await capture().catch(() => ""));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async done() {
      const end = Date.now() + 20_000;
      while (Date.now() < end && !screens.at(-1)?.includes("EXIT=")) await new Promise((r) => setTimeout(r, 100));
      sampling = false;
      await sampler;
      await execa("tmux", ["kill-session", "-t", session], { reject: false });
      return screens;
    },
  };
}

describe("stages and jobs: the pieces", () => {
  it("orders by swarmhook.stage (unlabelled: 0), finds jobs, and refuses a label that is not a number", () => {
    const doc = {
      services: {
        web: { deploy: { labels: { "swarmhook.stage": "2" } } },
        api: { deploy: { labels: ["swarmhook.stage=1"] } },
        migrate: { deploy: { mode: "replicated-job", labels: { "swarmhook.timeout": "30" } } },
        proxy: {},
      },
    };
    const stages = stagesOf(doc, 600_000);
    assert.deepEqual(
      stages?.map((s) => [s.n, s.services]),
      [
        [0, ["migrate", "proxy"]],
        [1, ["api"]],
        [2, ["web"]],
      ],
    );
    assert.deepEqual([...(stages?.[0]?.jobs ?? [])], [["migrate", { timeoutMs: 30_000 }]]);
    assert.equal(stagesOf({ services: { a: {}, b: { deploy: { mode: "replicated" } } } }, 1000), null, "no labels, no job: all at once");
    assert.throws(() => stagesOf({ services: { a: { deploy: { labels: { "swarmhook.stage": "first" } } } } }, 1000), StageError);
    assert.throws(
      () => stagesOf({ services: { m: { deploy: { mode: "replicated-job", labels: { "swarmhook.timeout": "soon" } } } } }, 1000),
      /swarmhook\.timeout must be a number of seconds/,
    );
  });

  it("a stage's file holds only its services, without env_file; a job carries the hash of its definition", () => {
    const doc = {
      version: "3.8",
      services: {
        m: { image: "x", deploy: { mode: "replicated-job" } },
        a: { image: "y", env_file: ["./app.env"], environment: { A: "1" } },
        b: { image: "z" },
      },
      networks: { n: {} },
    };
    const one = stageDoc(doc, ["m", "a"]) as {
      services: Record<string, { env_file?: unknown; deploy?: { labels?: object } }>;
      networks: object;
    };
    assert.deepEqual(Object.keys(one.services), ["m", "a"]);
    assert.equal(one.services.a?.env_file, undefined);
    assert.deepEqual(one.networks, { n: {} });
    assert.deepEqual(one.services.m?.deploy?.labels, { "swarmhook.spec": jobSpecHash(doc.services.m) });
    assert.notEqual(jobSpecHash({ ...doc.services.m, command: ["migrate", "up"] }), jobSpecHash(doc.services.m));
  });

  it("a job's log line loses its control characters and terminal escapes", () => {
    assert.equal(cleanLogLine("\x1b[31mERROR\x1b[0m relation\x07 missing\r"), "ERROR relation missing");
  });
});

describe("stages on the real one-node swarm", () => {
  let t: TempSpool;
  let a: TestAgent;
  const stack = `shtest-${randomBytes(3).toString("hex")}`;
  const [v1, v2, v3, v4, broken] = [randomSha(), randomSha(), randomSha(), randomSha(), randomSha()];
  let file: string;
  before(async () => {
    await Promise.all([buildWebImage(v1), buildWebImage(v2), buildWebImage(v3), buildWebImage(v4), buildWebImage(broken, { crash: true })]);
    t = await tempSpool();
    file = path.join(t.stateDir, "stack.yaml");
    await docker(["version"]);
    const { mkdir } = await import("node:fs/promises");
    await mkdir(t.stateDir, { recursive: true });
    await writeFile(file, stackYaml("echo migration 1"));
    a = await startTestAgent(t.root, { STACK_FILE: file, STACK_NAME: stack, DEPLOY_TIMEOUT_S: "60" });
  });
  after(async () => {
    await a?.stop();
    await docker(["stack", "rm", stack]).catch(() => undefined);
    await t?.cleanup();
  });

  it("deploys stage by stage: the job completes before api's update starts, api's update completes before web's starts", async () => {
    const r1 = await waitForRecord(t.root, await publish(t.root, v1));
    assert.equal(r1.outcome, "success", r1.reason);
    await writeFile(file, stackYaml("echo migration 2; sleep 2"));
    const id = await publish(t.root, v2);
    // followed from the moment it is queued: piped (a line per change) and at a terminal (tmux, redrawn in place)
    const piped = spawnDist("bin/swarmhook.js", ["follow", id, "--spool", t.root], {});
    const tmux = await followInTmux(id, t.root, stack);
    const r2 = await waitForRecord(t.root, id);
    assert.equal(r2.outcome, "success", r2.reason);
    assert.equal(await piped.exited, 0, piped.err());
    for (const [i, n] of [0, 1, 2].entries())
      assert.match(piped.out(), new RegExp(` · (deploying|verifying) · stage ${n} \\(${i + 1} of 3\\) · `), piped.out());
    for (const [n, svc] of [
      [0, "migrate"],
      [1, "api"],
      [2, "web"],
    ] as const)
      assert.match(piped.out(), new RegExp(`^  stage ${n}  ${svc}\\s+\\d/\\d new  \\S`, "m"), piped.out());
    assert.match(piped.out(), /^ {2}stage 2 {2}web\s+0\/0 new {2}waiting$/m, "a later stage waits its turn");
    assert.match(piped.out(), /^ {2}stage 0 {2}migrate\s+1\/1 new {2}completed$/m);
    const screens = await tmux.done();
    assert.ok(
      screens.some((x) => /stage 1 \(2 of 3\)/.test(x) && /stage 0 {2}migrate/.test(x)),
      "the terminal showed the stages",
    );
    assert.match(screens.at(-1) ?? "", /EXIT=0/);
    const [api, web] = [(await inspect(stack, "api")).UpdateStatus, (await inspect(stack, "web")).UpdateStatus];
    assert.equal(api?.State, "completed");
    assert.equal(web?.State, "completed");
    const migrated = await jobCompletedAt(stack);
    assert.ok(
      migrated <= Date.parse(api?.StartedAt ?? ""),
      `the migration completed (${migrated}) before api's update started (${api?.StartedAt})`,
    );
    assert.ok(
      Date.parse(api?.CompletedAt ?? "") <= Date.parse(web?.StartedAt ?? ""),
      `api's update completed (${api?.CompletedAt}) before web's started (${web?.StartedAt})`,
    );
    const said = a.logs.filter((l) => /^stage \d: (deploying|no changes|done)/.test(l.msg)).map((l) => l.msg.replace(/ \(.*/, ""));
    assert.ok(said.includes("stage 0: deploying migrate") && said.includes("stage 2: deploying web"), said.join(" | "));
  });

  it("a deploy that does not change the job does not run it again", async () => {
    const before = await inspect(stack, "migrate");
    const r = await waitForRecord(t.root, await publish(t.root, v3));
    assert.equal(r.outcome, "success", r.reason);
    const now = await inspect(stack, "migrate");
    assert.equal(now.Version.Index, before.Version.Index, "the job's service was not sent to Swarm");
    assert.equal(now.JobStatus?.JobIteration?.Index ?? 0, before.JobStatus?.JobIteration?.Index ?? 0, "no new run");
    assert.ok(a.logs.some((l) => l.msg === "stage 0: no changes"));
  });

  it("a migration exiting 3 fails the deploy with its exit code and log lines; api and web stay on their version", async () => {
    const [api, web] = [(await inspect(stack, "api")).Version.Index, (await inspect(stack, "web")).Version.Index];
    await writeFile(file, stackYaml("echo 'applying 0042_orders'; echo 'ERROR: relation orders already exists' >&2; exit 3"));
    const id = await publish(t.root, v4);
    const follow = spawnDist("bin/swarmhook.js", ["follow", id, "--spool", t.root], {});
    const r = await waitForRecord(t.root, id);
    assert.equal(r.outcome, "failed");
    assert.equal(await follow.exited, 1, follow.err());
    assert.match(follow.out(), / · failed\n {2}stage 0: migrate: the job failed with exit code 3/);
    assert.match(r.reason ?? "", /^stage 0: migrate: the job failed with exit code 3; its last 2 log lines:\n/);
    assert.match(r.reason ?? "", /applying 0042_orders/);
    assert.match(r.reason ?? "", /ERROR: relation orders already exists/);
    assert.equal((await inspect(stack, "api")).Version.Index, api, "api was never sent");
    assert.equal((await inspect(stack, "web")).Version.Index, web, "web was never sent");
  });

  it("stage 1 rolled back by Swarm: the deploy is rolled_back naming the stage, web untouched", async () => {
    await writeFile(file, stackYaml("echo migration 2"));
    const web = (await inspect(stack, "web")).Version.Index;
    const r = await waitForRecord(t.root, await publish(t.root, broken));
    assert.equal(r.outcome, "rolled_back", r.reason);
    assert.match(r.reason ?? "", /^stage 1: .*_api: rollback_completed/);
    assert.equal((await inspect(stack, "web")).Version.Index, web, "web was never sent");
  });

  it("ON_FAILURE=rollback after a stage failed: the rollback moves back only what moved, runs no job, leaves web alone", async () => {
    // the migration now runs beside api in stage 1 and fails: api has moved to v1 when the deploy stops
    await writeFile(file, stackYaml("echo 'applying 0043'; exit 3", 1));
    const image = async (svc: string) =>
      docker(["service", "inspect", `${stack}_${svc}`, "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
    const good = await image("api");
    assert.match(good, new RegExp(`:${v3}(@sha256:|$)`), "api runs the last good release, v3");
    const [api, web] = [(await inspect(stack, "api")).Version.Index, (await inspect(stack, "web")).Version.Index];
    const failed = await waitForRecord(t.root, await publish(t.root, v1));
    assert.equal(failed.outcome, "failed", failed.reason);
    assert.match(failed.reason ?? "", /^stage 1: migrate: the job failed with exit code 3/);
    assert.match(failed.followedBy ?? "", /^rollback-/, "ON_FAILURE=rollback (the default) queued a rollback");
    const migrate = await inspect(stack, "migrate");
    const back = await waitForRecord(t.root, failed.followedBy ?? "");
    assert.equal(back.outcome, "success", back.reason);
    assert.ok((await inspect(stack, "api")).Version.Index > api, "api was sent (to v1, then back)");
    assert.equal(await image("api"), good, "api is back on v3");
    const moved = (back.plan?.changes ?? []).map((c) => c.service);
    assert.ok(moved.includes("api") && !moved.includes("web"), `the rollback's plan: ${back.plan?.summary}`);
    assert.equal((await inspect(stack, "web")).Version.Index, web, "web was sent neither by the deploy nor by the rollback");
    const after = await inspect(stack, "migrate");
    assert.equal(after.Version.Index, migrate.Version.Index, "the rollback did not send the job");
    assert.equal(after.JobStatus?.JobIteration?.Index, migrate.JobStatus?.JobIteration?.Index, "nor run it again");
  });
});
