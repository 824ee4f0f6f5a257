import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { stringify as stringifyYaml } from "yaml";
import type { Progress } from "../spool/index.ts";
import { applyFiles, createDecrypted, whileApplying } from "./apply/index.ts";
import { ended, type DeployResult, type Deploying } from "./deploying.ts";
import { jobSpecHash, query, SPEC_LABEL, stageDoc, type Stage } from "./prepare/index.ts";
import { inspectStack, jobLogTail, judgeJob, verifyRelease, verifyUnchanged, type JobVerdict } from "./verify/index.ts";

// A stack deployed in stages (agent/pipeline.ts hands it here): stage by stage, lowest first, each
// stage's services sent to Swarm in a stack file of their own (never --prune: the other services keep
// their running spec) and verified before the next stage is touched; a job service (a migration) runs
// to completion first. Then the whole stack is verified as any deploy is, with the health URL.

type Entry = Progress["services"][number];

/**
 * Deploy `r`'s stages in order. A stage whose services the plan does not change is not sent (its
 * services are still verified); a job is sent only when its definition changed (the `swarmhook.spec`
 * label its service carries) and never by a rollback (a migration is not run backwards). A stage that
 * fails ends the deploy, naming the stage and the service; later stages are never touched.
 */
export async function deployStages(r: Deploying, stages: Stage[]): Promise<DeployResult> {
  const entries = new Map<string, Entry>(
    stages.flatMap((s) => s.services.map((name) => [name, { name, updated: 0, desired: 0, state: "waiting", stage: s.n }] as const)),
  );
  await r.d.hooks?.onProgress?.("deploying", [...entries.values()], stageInfo(stages, 0));
  const missing = await createDecrypted(r);
  if (missing) return ended(r, "failed", missing);
  // docker stack config put every env_file's variables in the rendering: no stage file names a file
  await r.removePlaintext();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-stage-"));
  let sent = 0;
  try {
    for (const [i, stage] of stages.entries()) {
      const moved = await runStage(r, stage, stageInfo(stages, i), entries, dir);
      if (typeof moved !== "number") return moved;
      sent += moved;
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  // a job was proven by its run (or, unchanged or for a rollback, not run): the stack is judged without it
  const jobs = new Set(stages.flatMap((s) => [...s.jobs.keys()].map((name) => `${r.d.stack.name}_${name}`)));
  const asked = new Map([...r.rendered.asked].filter(([name]) => !jobs.has(name)));
  const whole = { ...r, rendered: { ...r.rendered, asked } };
  return sent === 0 ? verifyUnchanged(whole) : verifyRelease({ ...whole, applied: true });
}

const stageInfo = (stages: Stage[], i: number): Progress["stage"] => ({ n: stages[i]?.n ?? 0, index: i + 1, of: stages.length });

/** The services of `stage` the deploy must send: those the plan changes (all, without a plan), and the jobs whose definition changed. */
async function toSend(r: Deploying, stage: Stage): Promise<{ services: string[]; jobs: string[] }> {
  const changed = new Set([
    ...(r.plan?.changes ?? []).filter((c) => c.change !== "remove").map((c) => c.service),
    ...(r.plan?.unresolved ?? []),
  ]);
  const services = stage.services.filter((s) => !stage.jobs.has(s) && (!r.plan || changed.has(s)));
  if (r.d.job.kind === "rollback" || stage.jobs.size === 0) return { services, jobs: [] };
  const defs = ((r.rendered.doc ?? {}) as { services?: Record<string, unknown> }).services ?? {};
  const jobs: string[] = [];
  for (const name of stage.jobs.keys()) {
    const full = `${r.d.stack.name}_${name}`;
    const had = await query(r.d.docker, ["service", "inspect", "--format", `{{index .Spec.Labels "${SPEC_LABEL}"}}`, full], r.env).catch(
      () => "", // no such service yet: it is new
    );
    if (had.trim() !== jobSpecHash(defs[name])) jobs.push(name);
  }
  return { services, jobs };
}

/** Send one stage and wait until it is done; returns how many services it sent, or the deploy's end. */
async function runStage(
  r: Deploying,
  stage: Stage,
  info: Progress["stage"],
  entries: Map<string, Entry>,
  dir: string,
): Promise<number | DeployResult> {
  const { log, clock } = r.d;
  const started = clock.now().getTime();
  const send = await toSend(r, stage);
  const names = [...send.services, ...send.jobs];
  const fail = (outcome: DeployResult["outcome"], why: string, services: DeployResult["services"] = []) =>
    ended({ ...r, applied: r.applied || names.length > 0 }, outcome, `stage ${stage.n}: ${why}`, services);
  if (names.length === 0) log.info({ stage: stage.n }, `stage ${stage.n}: no changes`);
  else {
    const file = path.join(dir, `stage-${stage.n}.yaml`);
    await fs.writeFile(file, stringifyYaml(stageDoc(r.rendered.doc, names)), { mode: 0o600 });
    log.info({ stage: stage.n, services: names }, `stage ${stage.n}: deploying ${names.join(", ")}`);
    const only = new Set(send.services);
    const look = async () =>
      progressOf(entries, (await inspectStack(r.d.docker, r.d.stack.name, r.rendered.asked, r.since, r.env, only)).progress, stage.n);
    // with a job the CLI would wait for it for ever when it fails: it returns at once, the watcher waits
    const applied = await whileApplying(r, () => applyFiles(r, [file], send.jobs.length > 0), look, info);
    await fs.rm(file, { force: true });
    if ("outcome" in applied) return { ...applied, reason: `stage ${stage.n}: ${applied.reason ?? "failed"}` };
    r.applied = true;
  }
  const problem = await waitStage(r, stage, send.jobs, new Date(started - 1000), info, entries);
  if (problem) return fail(problem.outcome, problem.reason, problem.services);
  log.info({ stage: stage.n, tookMs: clock.now().getTime() - started }, `stage ${stage.n}: done`);
  return names.length;
}

/** The progress entries of a stage's services laid over the whole stack's (later stages stay "waiting"). */
function progressOf(entries: Map<string, Entry>, seen: Progress["services"], n: number): Progress["services"] {
  for (const e of seen) entries.set(e.name, { ...e, stage: n });
  return [...entries.values()];
}

const jobEntry = (name: string, n: number, v: JobVerdict): Entry => ({
  name,
  stage: n,
  updated: v.completed,
  desired: v.total,
  state: v.status === "failed" ? `failed (${v.reason})`.slice(0, 40) : v.status === "completed" ? "completed" : `job ${v.state}`,
});

/**
 * Wait until a stage is done: its services converged (Swarm's update `completed`, after `monitor`)
 * and each job it sent completed. A rollback, a job that failed, or a deadline (DEPLOY_TIMEOUT_S for
 * services; a job's `swarmhook.timeout`) ends it with why.
 */
async function waitStage(
  r: Deploying,
  stage: Stage,
  jobs: readonly string[],
  since: Date,
  info: Progress["stage"],
  entries: Map<string, Entry>,
): Promise<{ outcome: DeployResult["outcome"]; reason: string; services?: DeployResult["services"] } | null> {
  const { docker, stack, clock, policy } = r.d;
  const start = clock.now().getTime();
  const only = new Set(stage.services.filter((s) => !stage.jobs.has(s)));
  const pendingJobs = new Set(jobs);
  for (;;) {
    const now = clock.now().getTime();
    let converged = true;
    if (only.size > 0) {
      const v = await inspectStack(docker, stack.name, r.rendered.asked, since, r.env, only);
      progressOf(entries, v.progress, stage.n);
      if (v.status === "rolled_back" || v.status === "failed") return { outcome: v.status, reason: v.reason, services: v.services };
      converged = v.status === "converged";
      if (!converged && now > start + policy.deployTimeoutMs)
        return {
          outcome: "failed",
          reason: `not converged within the deploy timeout: ${v.status === "pending" ? v.reason : ""}`,
          services: v.services,
        };
    }
    for (const name of [...pendingJobs]) {
      const v = await judgeJob(docker, `${stack.name}_${name}`, r.env);
      entries.set(name, jobEntry(name, stage.n, v));
      if (v.status === "completed") pendingJobs.delete(name);
      if (v.status === "failed") return { outcome: "failed", reason: await jobFailure(r, name, v) };
      const timeoutMs = stage.jobs.get(name)?.timeoutMs ?? policy.deployTimeoutMs;
      if (v.status === "running" && now > start + timeoutMs)
        return {
          outcome: "failed",
          reason: `${name}: the job did not complete within ${Math.round(timeoutMs / 1000)} s (${v.completed}/${v.total} done)`,
        };
    }
    await r.d.hooks?.onProgress?.("verifying", [...entries.values()], info);
    if (converged && pendingJobs.size === 0) return null;
    await clock.sleep(policy.verifyEveryMs ?? 1000);
  }
}

/** Why a job failed, for the record and the chat message: its exit code and the last lines it wrote. */
async function jobFailure(r: Deploying, name: string, v: Extract<JobVerdict, { status: "failed" }>): Promise<string> {
  const lines = await jobLogTail(r.d.docker, v.taskId, r.env);
  r.d.log.error({ job: name, exitCode: v.exitCode, logs: lines }, `${name}: the job failed (${v.reason})`);
  return `${name}: the job failed with ${v.reason}${lines.length > 0 ? `; its last ${lines.length} log lines:\n${lines.join("\n")}` : "; it wrote no log lines"}`;
}
