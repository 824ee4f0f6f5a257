// Stacks that wait for stacks, on the real one-node swarm: `app` dependsOn `db`, both deployed by
// one repository's pushes. One commit queues one job per stack (the watcher's own copy for the
// second); db's record is finished before app's deploy starts; db failing records app `blocked`,
// with app's services untouched; a redelivery retries it; a job naming app alone for a commit db
// never ran is blocked too; a cycle stops the watcher at start.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { dependencyProblem } from "../agent/config.ts";
import { blockedBy, copyJobId, dependenciesFirst, stacksFor } from "../agent/route.ts";
import { publish, readRecords, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { buildWebImage } from "./helpers/images.ts";
import { makeJob, randomSha } from "./helpers/jobs.ts";
import { spawnTs } from "./helpers/proc.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { docker, waitFor } from "./helpers/swarm.ts";
import type { StackConfig } from "../agent/config.ts";

const STACK = (svc: string) =>
  [
    'version: "3.8"',
    "services:",
    `  ${svc}:`,
    "    image: swarmhook-test/web:${IMAGE_TAG}",
    "    deploy:",
    "      replicas: 1",
    "      endpoint_mode: dnsrr",
    "      update_config: { parallelism: 1, delay: 0s, failure_action: rollback, monitor: 2s, order: start-first }",
    "      rollback_config: { parallelism: 0, monitor: 1s, order: stop-first }",
    "      restart_policy: { condition: any, delay: 1s }",
    "",
  ].join("\n");

const config = (stacks: { name: string; dependsOn?: string[] }[], dir: string) =>
  [
    "stacks:",
    ...stacks.flatMap((s) => [
      `  - name: ${s.name}`,
      `    file: ${path.join(dir, `${s.name}.yaml`)}`,
      ...(s.dependsOn ? [`    dependsOn: [${s.dependsOn.join(", ")}]`] : []),
    ]),
  ].join("\n") + "\n";

const stackConfig = (name: string, dependsOn: string[] = []) => ({
  config: { name, dependsOn, repository: undefined, branches: ["main"], tags: [] } as unknown as StackConfig,
});

describe("dependsOn: the pieces", () => {
  it("a push goes to every stack of its repository and branch, dependencies first; a copy naming its stack goes there only", () => {
    const stacks = [stackConfig("app", ["db"]), stackConfig("web", ["app"]), stackConfig("db")];
    assert.deepEqual(
      stacksFor(stacks, makeJob()).map((s) => s.config.name),
      ["db", "app", "web"],
    );
    assert.deepEqual(
      stacksFor(stacks, makeJob({ stack: "web" })).map((s) => s.config.name),
      ["web"],
    );
    assert.deepEqual(stacksFor(stacks, makeJob({ stack: "other" })), [], "a job naming a stack that does not deploy it goes nowhere");
    assert.deepEqual(
      dependenciesFirst([stackConfig("a"), stackConfig("b")]).map((s) => s.config.name),
      ["a", "b"],
      "no dependencies: as configured",
    );
    assert.equal(copyJobId("72d3162e-cc78-11e3-81ab-4c9367dc0958", "app"), copyJobId("72d3162e-cc78-11e3-81ab-4c9367dc0958", "app"));
    assert.notEqual(copyJobId("x", "app"), copyJobId("x", "db"));
  });

  it("blocks on a dependency's failure of the same commit, and on a commit the dependency does not run", async () => {
    const [sha, running] = [randomSha(), randomSha()];
    const outcomes = new Map([[`db ${sha}`, { outcome: "rolled_back" as const, reason: "db_db: rollback_completed" }]]);
    const of = (stack: string, commit: string) => outcomes.get(`${stack} ${commit}`);
    const runs = async () => running;
    assert.match(
      (await blockedBy(["db"], sha, of, runs)) ?? "",
      /^blocked: db, which this stack depends on, ended rolled_back for [0-9a-f]{12} \(db_db: rollback_completed\)/,
    );
    assert.equal(await blockedBy(["db"], running, of, runs), null, "db runs that commit (deployed before a restart)");
    assert.match((await blockedBy(["db"], randomSha(), of, runs)) ?? "", /has not deployed [0-9a-f]{12} \(it deploys first\)/);
    outcomes.set(`db ${sha}`, { outcome: "superseded" as never, reason: "" });
    assert.equal(await blockedBy(["db"], sha, of, runs), null, "a newer commit went first there");
    assert.equal(await blockedBy([], randomSha(), of, runs), null);
  });

  it("an unknown name or a cycle is a configuration error naming it", () => {
    assert.match(
      dependencyProblem([{ name: "app", dependsOn: ["dbx"] }]) ?? "",
      /stack app: dependsOn names dbx, which is not a configured stack/,
    );
    assert.equal(
      dependencyProblem([
        { name: "app", dependsOn: ["db"] },
        { name: "db", dependsOn: ["app"] },
      ]),
      "dependsOn forms a cycle: app → db → app",
    );
    assert.equal(
      dependencyProblem([
        { name: "app", dependsOn: ["db"] },
        { name: "db", dependsOn: [] },
      ]),
      null,
    );
  });

  it("the watcher refuses a cycle at start (exit 1), naming it", async () => {
    const t = await tempSpool();
    try {
      const dir = t.stateDir;
      await mkdir(dir, { recursive: true });
      for (const s of ["app", "db"]) await writeFile(path.join(dir, `${s}.yaml`), STACK(s));
      const file = path.join(dir, "agent.yaml");
      await writeFile(
        file,
        config(
          [
            { name: "app", dependsOn: ["db"] },
            { name: "db", dependsOn: ["app"] },
          ],
          dir,
        ),
      );
      const p = spawnTs("agent/main.ts", [], { SPOOL_DIR: t.root, AGENT_CONFIG: file, LOG_FORMAT: "json" });
      assert.equal(await p.exited, 1);
      assert.match(p.err() + p.out(), /dependsOn forms a cycle: app → db → app/);
    } finally {
      await t.cleanup();
    }
  });
});

describe("dependsOn on the real one-node swarm", () => {
  let t: TempSpool;
  let a: TestAgent;
  const [app, db] = [`shtest-${randomBytes(3).toString("hex")}`, `shtest-${randomBytes(3).toString("hex")}`];
  const [v1, broken] = [randomSha(), randomSha()];
  before(async () => {
    await Promise.all([buildWebImage(v1), buildWebImage(broken, { crash: true })]);
    t = await tempSpool();
    await mkdir(t.stateDir, { recursive: true });
    await writeFile(path.join(t.stateDir, `${app}.yaml`), STACK("api"));
    await writeFile(path.join(t.stateDir, `${db}.yaml`), STACK("db"));
    const file = path.join(t.stateDir, "agent.yaml");
    // app is listed first: the order comes from dependsOn, not from the file
    await writeFile(file, config([{ name: app, dependsOn: [db] }, { name: db }], t.stateDir));
    a = await startTestAgent(t.root, { AGENT_CONFIG: file, DEPLOY_TIMEOUT_S: "60" });
  });
  after(async () => {
    await a?.stop();
    for (const s of [app, db]) await docker(["stack", "rm", s]).catch(() => undefined);
    await t?.cleanup();
  });

  it("one commit for both: db's record is finished before app's deploy starts", async () => {
    const id = await publish(t.root, v1);
    const dbRecord = await waitForRecord(t.root, id);
    const appRecord = await waitForRecord(t.root, copyJobId(id, app));
    assert.deepEqual([dbRecord.stack, dbRecord.outcome], [db, "success"], dbRecord.reason);
    assert.deepEqual([appRecord.stack, appRecord.outcome], [app, "success"], appRecord.reason);
    assert.equal(appRecord.job?.kind === "deploy" && appRecord.job.stack, app, "the copy names its stack");
    assert.ok(
      Date.parse(dbRecord.timings.finished) <= Date.parse(appRecord.timings.started ?? ""),
      `db finished ${dbRecord.timings.finished}, app started ${appRecord.timings.started}`,
    );
    assert.equal((await readRecords(t.root)).length, 2, "one record per stack");
  });

  it("db failing: app is recorded blocked and nothing of it changes; a redelivery retries both", async () => {
    const appVersion = await docker(["service", "inspect", `${app}_api`, "--format", "{{.Version.Index}}"]);
    const id = await publish(t.root, broken);
    const dbRecord = await waitForRecord(t.root, id);
    assert.equal(dbRecord.outcome, "rolled_back", dbRecord.reason);
    const appRecord = await waitForRecord(t.root, copyJobId(id, app));
    assert.equal(appRecord.outcome, "blocked");
    assert.match(
      appRecord.reason ?? "",
      new RegExp(`^blocked: ${db}, which this stack depends on, ended rolled_back for ${broken.slice(0, 12)}`),
    );
    assert.equal(appRecord.attempts.length, 0, "docker stack deploy never ran for app");
    assert.equal(
      await docker(["service", "inspect", `${app}_api`, "--format", "{{.Version.Index}}"]),
      appVersion,
      "app's service untouched",
    );
    assert.ok(
      a.logs.some((l) => l.level === 50 && String(l.msg).startsWith(`blocked: ${db}`)),
      "an error line says it",
    );
    // GitHub's Redeliver sends the same delivery id again: both were retryable, both are queued again
    const before = (await readRecords(t.root)).length;
    await publish(t.root, broken, { deliveryId: id });
    await waitFor("both retried", async () => ((await readRecords(t.root)).length >= before + 2 ? true : undefined), 120_000, 250);
    const retried = (await readRecords(t.root)).slice(before);
    assert.deepEqual(
      retried.map((r) => [r.stack, r.outcome]).sort(),
      [
        [app, "blocked"],
        [db, "rolled_back"],
      ].sort(),
    );
  });

  it("a job naming app alone, for a commit db never ran, does not jump the order: blocked", async () => {
    // what a planted job (or a lost copy) looks like: stack: app, a commit db was never asked to deploy
    const appVersion = await docker(["service", "inspect", `${app}_api`, "--format", "{{.Version.Index}}"]);
    const alone = randomSha();
    const id = await publish(t.root, alone, { stack: app });
    const rec = await waitForRecord(t.root, id);
    assert.deepEqual([rec.stack, rec.outcome], [app, "blocked"], rec.reason);
    assert.match(rec.reason ?? "", new RegExp(`^blocked: ${db}, which this stack depends on, has not deployed ${alone.slice(0, 12)}`));
    assert.equal(rec.attempts.length, 0, "docker stack deploy never ran for app");
    assert.equal(await docker(["service", "inspect", `${app}_api`, "--format", "{{.Version.Index}}"]), appVersion);
    assert.equal(
      (await readRecords(t.root)).filter((r) => r.job?.kind === "deploy" && r.job.sha === alone).length,
      1,
      "db was not deployed by it either",
    );
  });
});
