// The reconcile loop on the real one-node swarm, real git and a loopback GitHub: a branch tip no
// webhook brought deploys by itself (once), drift from the last deploy is told once per episode and
// survives a SIGKILL of the watcher, and SELF_HEAL puts a drifted stack back, three times at most.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import os from "node:os";
import { describe, it } from "node:test";
import { loadAgentConfig } from "../agent/config.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { checkInSync } from "../bin/doctor-checks.ts";
import { listJobs } from "../bin/jobs.ts";
import { freshState, observe } from "../agent/reconcile/episode.ts";
import type { Plan } from "../agent/prepare/index.ts";
import { DELIVERY_ID, openSpool, readReconcileState, reconcileJobId, triggerOf } from "../spool/index.ts";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { receiver, type Received } from "./helpers/chat.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { REPO, gitConfig, makeRepo } from "./helpers/git-repo.ts";
import { startFakeGithub } from "./helpers/github.ts";
import { REGISTRY_WEB_REPO, buildWebImage, pushImage } from "./helpers/images.ts";
import { makeJob, randomSha } from "./helpers/jobs.ts";
import { freePort } from "./helpers/postgres.ts";
import { spawnTs, stopProc, type Proc } from "./helpers/proc.ts";
import { assertPrometheusText } from "./helpers/prometheus.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { createByHand, docker, removeStack, uniqueStack, waitFor } from "./helpers/swarm.ts";

const INTERVAL_S = 5;
const TOKEN = "ghp_reconcile0123456789abcdef";

/** Reconcile passes the in-process watcher finished so far (over all stacks and outcomes). */
const passes = async (a: TestAgent) => (await a.metrics.reconcilePasses.get()).values.reduce((n, v) => n + v.value, 0);
const waitPasses = async (a: TestAgent, n: number) => {
  const target = (await passes(a)) + n;
  await waitFor(
    `${n} reconcile passes`,
    async () => ((await passes(a)) >= target ? true : undefined),
    (n + 2) * INTERVAL_S * 1000 + 60_000,
    200,
  );
};
const chat = (got: Received[], event: string) =>
  got
    .map((g) => JSON.parse(g.body) as { event: string; stack: string; reason: string | null; durationMs: number | null })
    .filter((m) => m.event === event);
const image = (stack: string) => docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);

describe("reconcile: episodes and ids", () => {
  const plan = (summary: string, services: string[]): Plan => ({
    changes: services.map((service) => ({ service, change: "update", fields: [{ field: "image", from: "a", to: "b" }] })),
    unresolved: [],
    summary,
  });
  const none: Plan = { changes: [], unresolved: [], summary: "no changes" };
  const at = (s: number) => new Date(Date.UTC(2026, 11, 3, 12, 0, s));

  it("drift is told when it starts and when it ends, a change in between is logged only; a state read back repeats nothing", () => {
    let st = freshState("app", at(0));
    const step = (p: Plan, s: number) => {
      const r = observe(st, { plan: p, short: [] }, "done/x.json", at(s));
      st = r.state;
      return r.events.map((e) => e.type);
    };
    assert.deepEqual(step(none, 0), []);
    assert.deepEqual(step(plan("web: image a → b", ["web"]), 5), ["drift"]);
    assert.deepEqual(step(plan("web: image a → b", ["web"]), 10), []);
    st = JSON.parse(JSON.stringify(st)) as typeof st; // what a restart reads back from state/
    assert.deepEqual(step(plan("web: image a → b", ["web"]), 15), [], "no second message after a restart");
    assert.deepEqual(step(plan("web: image a → b; api: image c → d", ["web", "api"]), 20), ["drift_changed"]);
    assert.equal(st.drift?.since, at(5).toISOString(), "the episode keeps its start");
    const end = observe(st, { plan: none, short: [] }, "done/x.json", at(25));
    assert.deepEqual(end.events, [{ type: "in_sync", lastedMs: 20_000, since: at(5).toISOString() }]);
    assert.equal(end.state.drift, null);
  });

  it("services below desired are reported on the third pass in a row, once; a pass at full strength ends it", () => {
    let st = freshState("app", at(0));
    const short = [{ service: "web", running: 2, desired: 3 }];
    const types: string[][] = [];
    for (let i = 0; i < 5; i++) {
      const r = observe(st, { plan: none, short }, undefined, at(i * 5));
      st = r.state;
      types.push(r.events.map((e) => e.type));
    }
    assert.deepEqual(types, [[], [], ["degraded"], [], []]);
    assert.deepEqual(observe(st, { plan: none, short: [] }, undefined, at(30)).events, [{ type: "recovered_tasks", lastedMs: 30_000 }]);
    let brief = freshState("app", at(0));
    brief = observe(brief, { plan: none, short }, undefined, at(0)).state;
    brief = observe(brief, { plan: none, short }, undefined, at(5)).state;
    assert.deepEqual(observe(brief, { plan: none, short: [] }, undefined, at(10)).events, [], "two passes short: never told");
  });

  it("a commit of a stack has one reconcile job id, another stack or commit another; triggers as records name them", () => {
    const sha = randomSha();
    assert.equal(reconcileJobId("app", sha), reconcileJobId("app", sha));
    assert.notEqual(reconcileJobId("app", sha), reconcileJobId("docs", sha));
    assert.notEqual(reconcileJobId("app", sha), reconcileJobId("app", randomSha()));
    assert.match(reconcileJobId("app", sha), DELIVERY_ID);
    assert.equal(triggerOf({ ...makeJob({ sha }), event: "reconcile" }), "reconcile");
  });
});

describe("reconcile: what no webhook brought", () => {
  it("a git stack with no API at all: its tip deploys by itself (trigger reconcile), then the next commit; a commit on another branch does not; a webhook for a commit the loop also sees gives one job", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const c1 = await repo.commit(1, "one");
    const { stateDir, config } = await gitConfig(t, `file://${repo.dir}`, stack);
    const agent = await startTestAgent(s.root, { AGENT_CONFIG: config, STATE_DIR: stateDir, RECONCILE_INTERVAL_S: String(INTERVAL_S) });
    onEnd(t, () => agent.stop());

    const r1 = await waitForRecord(s.root, reconcileJobId(stack, c1), 120_000);
    assert.equal(r1.outcome, "success", r1.reason);
    assert.equal(r1.trigger, "reconcile");
    assert.equal(r1.job?.kind === "deploy" && r1.job.event, "reconcile");
    const said = agent.logs.filter((l) => l.msg === `deploying ${c1.slice(0, 12)}: no webhook arrived for it`);
    assert.equal(said.length, 1, "one warn line");
    assert.equal(said[0]?.level, 40);

    const c2 = await repo.commit(2, "two");
    const r2 = await waitForRecord(s.root, reconcileJobId(stack, c2), (INTERVAL_S + 120) * 1000);
    assert.equal(r2.outcome, "success", r2.reason);
    assert.equal(
      await docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.Mode.Replicated.Replicas}}"]),
      "2",
      "c2's stack file deployed",
    );

    await repo.git("checkout", "--quiet", "-b", "feature");
    await repo.commit(1, "side");
    await repo.git("checkout", "--quiet", "main");
    await waitPasses(agent, 3);
    assert.equal((await readRecords(s.root)).length, 2, "the other branch's commit deployed nothing");
    assert.equal(
      await agent.metrics.drift.get().then((g) => g.values.find((v) => v.labels.stack === stack)?.value),
      0,
      "a git stack just deployed is in sync",
    );

    // webhooks on as well: a push lands on main and its webhook's job in new/ at once (the image is built
    // beforehand, on a branch of its own); whenever within a pass that happens, the loop sees the job
    // (the tick claims new/ before the loop decides) and queues nothing
    for (const [i, offsetMs] of [0, 1700, 3400].entries()) {
      await repo.git("checkout", "--quiet", "-b", `next${i}`);
      const c = await repo.commit(2, `webhook ${i}`);
      await repo.git("checkout", "--quiet", "main");
      await waitPasses(agent, 1);
      await new Promise((r) => setTimeout(r, offsetMs));
      const head = await repo.git("rev-parse", "HEAD");
      await repo.git("merge", "--quiet", "--ff-only", c);
      const pushed = await publish(s.root, c, { repository: REPO, before: head });
      assert.equal((await waitForRecord(s.root, pushed)).outcome, "success");
      await waitPasses(agent, 2);
      const forIt = (await readRecords(s.root)).filter((r) => r.job?.sha === c);
      assert.deepEqual(
        forIt.map((r) => r.jobId),
        [pushed],
        `one job and one record for the commit whose webhook came ${offsetMs} ms after a pass`,
      );
    }
    const ids = await readdir(openSpool(s.root).dir("ids"));
    assert.equal(ids.filter((n) => n.startsWith("reconcile-")).length, 2, "the loop queued c1 and c2 only");
  });

  it("a stack file on this node: the branch tip from GitHub (loopback, every request checked against @octokit/openapi) deploys with its IMAGE_TAG", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO }));
    await pushImage(await buildWebImage(b, { repo: REGISTRY_WEB_REPO }));
    const branches = { main: [a] };
    const gh = await startFakeGithub({ token: TOKEN, branches });
    onEnd(t, () => gh.close());
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("registry-web"),
      STACK_NAME: stack,
      DEPLOY_REPOSITORY: REPO,
      GITHUB_TOKEN: TOKEN,
      GITHUB_API_URL: gh.url,
      RECONCILE_INTERVAL_S: String(INTERVAL_S),
    });
    onEnd(t, () => agent.stop());
    onEnd(t, () => removeStack(stack));

    const ra = await waitForRecord(s.root, reconcileJobId(stack, a));
    assert.equal(ra.outcome, "success", ra.reason);
    assert.match(await image(stack), new RegExp(`^${REGISTRY_WEB_REPO}:${a}@sha256:`));
    branches.main.unshift(b);
    const rb = await waitForRecord(s.root, reconcileJobId(stack, b), (INTERVAL_S + 120) * 1000);
    assert.equal(rb.outcome, "success", rb.reason);
    assert.equal(rb.trigger, "reconcile");
    assert.match(await image(stack), new RegExp(`^${REGISTRY_WEB_REPO}:${b}@sha256:`));
    const asked = gh.requests.filter((r) => r.template === "/repos/{owner}/{repo}/branches/{branch}");
    assert.ok(asked.length >= 2, "the tip was asked of GitHub");
    assert.deepEqual(asked[0]?.params, { owner: "acme", repo: "shop", branch: "main" });
    assert.ok(
      gh.requests.some((r) => r.template === "/repos/{owner}/{repo}/compare/{basehead}" && r.params.basehead === `main...${b}`),
      "the reconcile job's commit was shown to be on main before it deployed",
    );
    assert.deepEqual(gh.violations, []);
  });
});

describe("reconcile: drift from the last deploy", () => {
  it("an image, a scale and a service changed by hand are drift, told once per episode (log, gauge, chat, jobs, doctor) and again after a SIGKILL of the watcher not at all; undone, in sync", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    const digestA = await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO }));
    await pushImage(await buildWebImage(b, { repo: REGISTRY_WEB_REPO }));
    const hook = await receiver(t);
    const port = await freePort();
    const env = {
      SPOOL_DIR: s.root,
      STATE_DIR: `${s.root}.state`,
      STACK_FILE: stackFile("registry-web"),
      STACK_NAME: stack,
      POLL_INTERVAL_MS: "200",
      RECONCILE_INTERVAL_S: String(INTERVAL_S),
      METRICS_ADDR: `127.0.0.1:${port}`,
      NOTIFY_URLS: `${hook.url}/generic`,
      LOG_FORMAT: "json",
      HOME: os.tmpdir(),
    };
    const procs: Proc[] = [];
    const start = () => {
      const p = spawnTs("agent/main.ts", [], env);
      procs.push(p);
      return p;
    };
    onEnd(t, async () => {
      for (const p of procs) await stopProc(p, "SIGKILL");
      await removeStack(stack);
    });
    const scrape = async () => {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      const value = (name: string) => Number(new RegExp(`^${name}\\{stack="${stack}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
      const passed = [...text.matchAll(/^swarmhook_reconcile_passes_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
      return { text, drift: value("swarmhook_drift_services"), degraded: value("swarmhook_degraded_services"), passed };
    };
    const procPasses = async (n: number) => {
      const target = (await scrape().catch(() => ({ passed: 0 }))).passed + n;
      await waitFor(
        `${n} passes`,
        async () => ((await scrape().catch(() => ({ passed: 0 }))).passed >= target ? true : undefined),
        (n + 2) * INTERVAL_S * 1000 + 30_000,
        250,
      );
    };
    const gauge = (want: number, what: string) =>
      waitFor(
        what,
        async () => ((await scrape().catch(() => null))?.drift === want ? true : undefined),
        2 * INTERVAL_S * 1000 + 15_000,
        250,
      );
    const driftLines = (p: Proc) => p.lines.filter((l) => l.includes('"msg":"drift from the last deploy'));
    const config = loadAgentConfig(env);
    const doctorSays = () =>
      checkInSync({ config, docker: createDockerRunner(), env: {} }, config.stacks[0] as (typeof config.stacks)[number]);

    let p = start();
    assert.equal((await waitForRecord(s.root, await publish(s.root, a))).outcome, "success");
    await procPasses(10);
    const calm = await scrape();
    assert.equal(calm.drift, 0, "ten passes right after a deploy: in sync (digests pinned, Docker's defaults filled in)");
    assertPrometheusText(calm.text);
    assert.deepEqual(driftLines(p), []);
    assert.equal((await doctorSays()).ok, true);

    const svc = `${stack}_web`;
    await docker(["service", "update", "--quiet", "--image", `${REGISTRY_WEB_REPO}:${b}`, svc]);
    await gauge(1, "the drift gauge at 1 within two intervals");
    await procPasses(5);
    assert.equal(driftLines(p).length, 1, "one warn line for the episode");
    assert.match(driftLines(p)[0] ?? "", /"level":40/);
    assert.match(
      driftLines(p)[0] ?? "",
      new RegExp(`web: image ${REGISTRY_WEB_REPO}:${b}@sha256:[0-9a-f]{64} → ${REGISTRY_WEB_REPO}:${a}@${digestA}`),
    );
    await waitFor("the drift message", async () => (chat(hook.got, "drift").length > 0 ? true : undefined), 10_000, 100);
    assert.equal(chat(hook.got, "drift").length, 1, "one drift message over five intervals");
    assert.match(chat(hook.got, "drift")[0]?.reason ?? "", /^web: image /);
    assert.match(await listJobs(s.root, 5, env.STATE_DIR), new RegExp(`^drift: ${svc} image \\(since `));
    const doctor = await doctorSays();
    assert.equal(doctor.ok, false);
    assert.match(doctor.detail, /^drift since .*: web: image /);

    // SIGKILLed during the episode: the next watcher neither repeats the message nor forgets the drift
    await stopProc(p, "SIGKILL");
    p = start();
    await procPasses(2);
    assert.equal((await scrape()).drift, 1, "the gauge still 1 after the restart");
    assert.deepEqual(driftLines(p), [], "no second warn line");
    assert.equal(chat(hook.got, "drift").length, 1, "no second drift message");

    await docker(["service", "update", "--quiet", "--image", `${REGISTRY_WEB_REPO}:${a}@${digestA}`, svc]);
    await gauge(0, "in sync once the image is put back");
    await waitFor("the in_sync message", async () => (chat(hook.got, "in_sync").length === 1 ? true : undefined), 10_000, 100);
    assert.ok((chat(hook.got, "in_sync")[0]?.durationMs ?? 0) >= INTERVAL_S * 1000, "it says how long the drift lasted");
    assert.equal((await doctorSays()).ok, true);

    await docker(["service", "scale", "--detach", `${svc}=2`]);
    await gauge(1, "a scale beyond the stack file is drift");
    assert.match((await readReconcileState(openSpool(s.root), stack))?.drift?.summary ?? "", /^web: replicas 2 → 1$/);
    await docker(["service", "scale", "--detach", `${svc}=1`]);
    await gauge(0, "scaled back");

    const extra = `${stack}_extra`;
    await createByHand(stack, extra);
    await gauge(1, "a service added under the stack's namespace is drift");
    assert.match(await listJobs(s.root, 5, env.STATE_DIR), new RegExp(`^drift: ${extra} not in the stack file`));
    await docker(["service", "rm", extra]);
    await gauge(0, "removed again");
    await waitFor("three episodes told", async () => (chat(hook.got, "in_sync").length === 3 ? true : undefined), 10_000, 100);
    assert.equal(chat(hook.got, "drift").length, 3);
  });

  it("SELF_HEAL=1: a heal puts the image back (trigger heal, success); when the drift comes back after three heals, healing stops with one message", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    const digestA = await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO }));
    await pushImage(await buildWebImage(b, { repo: REGISTRY_WEB_REPO }));
    const hook = await receiver(t);
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("registry-web"),
      STACK_NAME: stack,
      RECONCILE_INTERVAL_S: String(INTERVAL_S),
      SELF_HEAL: "1",
      NOTIFY_URLS: `${hook.url}/generic`,
    });
    onEnd(t, () => agent.stop());
    onEnd(t, () => removeStack(stack));
    assert.equal((await waitForRecord(s.root, await publish(s.root, a))).outcome, "success");
    const svc = `${stack}_web`;
    const heals = async () => (await readRecords(s.root)).filter((r) => r.trigger === "heal");

    for (let round = 1; round <= 3; round++) {
      await docker(["service", "update", "--quiet", "--image", `${REGISTRY_WEB_REPO}:${b}`, svc]);
      const healed = await waitFor(
        `heal ${round}`,
        async () => ((await heals()).length === round ? (await heals())[round - 1] : undefined),
        180_000,
        250,
      );
      assert.equal(healed?.outcome, "success", healed?.reason);
      assert.equal(healed?.job?.kind === "rollback" && healed.job.cause, "heal");
      assert.equal(await image(stack), `${REGISTRY_WEB_REPO}:${a}@${digestA}`, "the recorded digest is back");
      await waitPasses(agent, 1); // the heal's own deploy is compared: in sync
    }
    await docker(["service", "update", "--quiet", "--image", `${REGISTRY_WEB_REPO}:${b}`, svc]);
    await waitFor(
      "healing stops",
      async () => (agent.logs.some((l) => l.msg.startsWith("self-heal stopped")) ? true : undefined),
      60_000,
      250,
    );
    await waitPasses(agent, 3);
    assert.equal((await heals()).length, 3, "no fourth heal");
    assert.equal(agent.logs.filter((l) => l.msg.startsWith("self-heal stopped")).length, 1, "one error line");
    assert.equal(agent.logs.find((l) => l.msg.startsWith("self-heal stopped"))?.level, 50);
    await waitFor("the message", async () => (chat(hook.got, "heal_stopped").length > 0 ? true : undefined), 10_000, 100);
    assert.equal(chat(hook.got, "heal_stopped").length, 1, "one heal_stopped message");
    assert.match(await image(stack), new RegExp(`^${REGISTRY_WEB_REPO}:${b}@`), "the drift stays");
  });
});
