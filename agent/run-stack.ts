import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import {
  JOB_VERSION,
  branchOf,
  publishJob,
  readDeployed,
  rollbackJobId,
  shortSha,
  writeDeployed,
  writeImageWait,
  writeProgress,
  type DeployJob,
  type Deployed,
  type Progress,
  type RollbackRequest,
  type Spool,
} from "../spool/index.ts";
import { coalesce, type Pending } from "./coalesce.ts";
import type { AgentConfig, StackConfig } from "./config.ts";
import { deployJob, type DeployHooks, type DeployResult } from "./pipeline.ts";
import { outsideCheckout } from "./prepare/index.ts";
import { checkout, prepareGitBatch, type GitBatch } from "./prepare/index.ts";
import { pruneObjectVersions } from "./prepare/index.ts";
import type { GitToken, Mirror, RegistryClient } from "./prepare/index.ts";
import type { DockerRunner } from "./docker.ts";
import type { AgentMetrics } from "./metrics.ts";
import { keepRendered, type Recorder } from "./record/index.ts";
import type { Reporter } from "./report/index.ts";
import type { StackRuntime } from "./state.ts";

/** What one stack's deploy loop needs; built once by createAgent. */
export interface StackContext {
  config: Readonly<AgentConfig>;
  spool: Spool;
  docker: DockerRunner;
  log: Logger;
  clock: Clock;
  recorder: Recorder;
  metrics: AgentMetrics;
  reporter: Reporter;
  /** A token for git over https to GitHub, when the watcher has GitHub credentials. */
  gitToken?: GitToken | undefined;
  /** Whether a commit is in a branch's history, asked of GitHub (when the watcher has credentials). */
  onBranch?: ((repository: string, branch: string, sha: string) => Promise<boolean>) | undefined;
  /** Asks registries which digest an image names (the images-first step). */
  registry: RegistryClient;
  /** The watcher is stopping (an image wait ends; the job stays in work/ for the next start). */
  stopping: () => boolean;
  /** Why a stack may not deploy a commit: a stack it depends on failed it (`dependsOn`); null to go on. */
  blockedBy?: (stack: StackRuntime, job: DeployJob) => Promise<string | null>;
}

/**
 * Take every job pending for `stack`, decide (coalesce: deploy the newest received, supersede the
 * rest, refuse what the branch moved past), record the losers, deploy the winner and record it.
 */
export async function runStack(ctx: StackContext, stack: StackRuntime): Promise<void> {
  const { spool, log, recorder, clock } = ctx;
  const name = stack.config.name;
  const batch = stack.pending.splice(0);
  if (batch.length === 0) return;
  const { deployed, problem } = await readDeployed(spool, name).catch((err: unknown) => {
    stack.pending.unshift(...batch); // the spool failed us: the jobs wait in work/ for the next tick
    throw err;
  });
  if (problem) log.warn({ stack: name }, problem);
  const judged: { jobs: Pending[]; git?: GitBatch } | null = stack.config.git
    ? await judgeByGit(ctx, stack.config, batch, deployed)
    : await judgeRuns(ctx, stack.config, batch);
  if (!judged) return;
  const decision = coalesce(judged.jobs, deployed, judged.git?.ancestry);
  for (const { pending, reason } of decision.stale) await recorder.finish(pending, "stale", { stack: name, reason });
  for (const { pending, by } of decision.superseded) {
    await recorder.finish(pending, "superseded", {
      stack: name,
      supersededBy: by.jobId,
      reason: `a newer delivery (${shortSha(by.job.sha)}) was pending`,
    });
  }
  const winner = decision.deploy;
  const remember = (d: Omit<Deployed, "stack" | "finishedAt" | "moves">) =>
    writeDeployed(spool, { stack: name, finishedAt: clock.now().toISOString(), moves: decision.moves, ...d }).catch((err: unknown) =>
      log.error({ err, stack: name }, "could not write state/; stale detection may miss this deploy"),
    );
  const keep = () =>
    deployed ? remember({ sha: deployed.sha, jobId: deployed.jobId, release: deployed.release, record: deployed.record }) : undefined;
  if (!winner || (await refusedAsBlocked(ctx, stack, winner))) return keep();
  const started = clock.now();
  const jobLog = log.child({ jobId: winner.jobId, deliveryId: winner.job.deliveryId, sha: winner.job.sha, stack: name });
  const hooks = deployHooks(ctx, stack, winner, jobLog);
  stack.current = winner;
  let result: DeployResult;
  try {
    result = await deployFrom(ctx, stack.config, winner, judged.git?.mirror, jobLog, hooks);
  } finally {
    stack.current = null;
  }
  await hooks.over();
  if (result.outcome === "interrupted") {
    jobLog.info("stopping: the job waits in work/ for its images until the watcher starts again");
    return keep();
  }
  if (result.outcome === "superseded") {
    await recorder.finish(winner, "superseded", {
      stack: name,
      ...(result.supersededBy ? { supersededBy: result.supersededBy } : {}),
      reason: result.reason ?? "superseded",
    });
    return keep();
  }
  const followedBy = result.outcome === "failed" ? await rollBackAfter(ctx, stack, winner, result, deployed) : undefined;
  const { attempts, services, warnings, release, plan } = result;
  const where = await recorder.finish(winner, result.outcome, {
    stack: name,
    started,
    attempts,
    services,
    warnings,
    ...(result.reason
      ? { reason: result.reason + (followedBy ? `; rolling back to ${shortSha(deployed?.sha ?? "")} (${followedBy})` : "") }
      : {}),
    ...(release ? { release } : {}),
    ...(plan ? { plan } : {}),
    ...(followedBy ? { followedBy } : {}),
    ...(decision.forced ? { forced: true } : {}),
  });
  if (result.outcome === "success") {
    await remember({ sha: winner.job.sha, jobId: winner.jobId, release, record: where ?? undefined });
    if (where && result.deployedDoc !== undefined)
      await keepRendered(ctx.config.stateDir, name, where, result.deployedDoc).catch((err: unknown) =>
        log.warn({ err, stack: name }, "could not keep the deployed rendering; the reconcile loop renders the release itself"),
      );
  } else await keep();
}

/** A winner whose commit a stack this one depends on failed: recorded `blocked`, nothing deployed. Whether it was. */
async function refusedAsBlocked(ctx: StackContext, stack: StackRuntime, winner: Pending): Promise<boolean> {
  const blocked = winner.job.kind === "deploy" ? await ctx.blockedBy?.(stack, winner.job) : null;
  if (!blocked) return false;
  ctx.log.error({ stack: stack.config.name, jobId: winner.jobId, sha: winner.job.sha }, blocked);
  await ctx.recorder.finish(winner, "blocked", { stack: stack.config.name, reason: blocked });
  return true;
}

/**
 * A git stack's batch, judged by its repository (prepareGitBatch): jobs git cannot vouch for are
 * recorded `invalid`; when the fetch fails, every job is recorded `failed` (a redelivery retries).
 * Returns the jobs left and what git knows, or null when none is left.
 */
async function judgeByGit(ctx: StackContext, stack: StackConfig, batch: Pending[], deployed: Deployed | null) {
  try {
    const git = await prepareGitBatch(ctx.config.stateDir, stack, batch, deployed, ctx.log, ctx.gitToken);
    for (const { pending, reason } of git.invalid) await ctx.recorder.finish(pending, "invalid", { stack: stack.name, reason });
    return git.jobs.length > 0 ? { jobs: git.jobs, git } : null;
  } catch (err) {
    for (const p of batch) await ctx.recorder.finish(p, "failed", { stack: stack.name, reason: (err as Error).message });
    return null;
  }
}

/**
 * A stack file on this node: a workflow_run job is judged by its commit, never its `head_branch`
 * (a tag's name for a tag-triggered run: a tag named main would deploy). With GitHub credentials the
 * commit must be in the branch's history (GitHub's compare); without them it cannot be told, and the
 * job is refused. A git stack's jobs are judged by its repository (judgeByGit) instead.
 */
async function judgeRuns(ctx: StackContext, stack: StackConfig, batch: Pending[]): Promise<{ jobs: Pending[] } | null> {
  const jobs: Pending[] = [];
  for (const p of batch) {
    // a workflow_run's head_branch, and a reconcile job's branch (the watcher's own, but new/ is the API's too), are shown on GitHub first
    const checked = p.job.kind === "deploy" && (p.job.event === "workflow_run" || p.job.event === "reconcile");
    const branch = checked ? branchOf(p.job.ref) : null;
    if (branch === null) {
      jobs.push(p);
      continue;
    }
    let reason: string | null = null;
    if (!ctx.onBranch)
      reason = `a ${p.job.kind === "deploy" && p.job.event === "reconcile" ? "reconcile" : "workflow_run"} job is deployed only when its commit is shown to be on ${branch}: give the watcher GitHub credentials (GITHUB_TOKEN or an App) or deploy the stack from git`;
    else {
      const on = await ctx.onBranch(p.job.repository, branch, p.job.sha).catch((err: unknown) => err as Error);
      if (on instanceof Error) {
        await ctx.recorder.finish(p, "failed", {
          stack: stack.name,
          reason: `could not ask GitHub whether ${shortSha(p.job.sha)} is on ${branch}: ${on.message}`,
        });
        continue;
      }
      if (!on)
        reason = `${shortSha(p.job.sha)} is not on ${branch} (GitHub's compare): a workflow_run of a tag or another branch named like it does not deploy`;
    }
    if (reason) await ctx.recorder.finish(p, "invalid", { stack: stack.name, reason });
    else jobs.push(p);
  }
  return jobs.length > 0 ? { jobs } : null;
}

/** Deploy one job: a git stack's file from a clean checkout of the job's commit, else the file on this node. */
async function deployFrom(
  ctx: StackContext,
  stack: StackConfig,
  job: Pending,
  mirror: Mirror | undefined,
  log: Logger,
  hooks: DeployHooks,
): Promise<DeployResult> {
  const deps = {
    docker: ctx.docker,
    registry: ctx.registry,
    hooks,
    log,
    policy: ctx.config,
    stack,
    job: job.job,
    clock: ctx.clock,
  };
  if (!mirror) return deployJob(deps);
  let co: Awaited<ReturnType<typeof checkout>>;
  try {
    co = await checkout(ctx.config.stateDir, mirror, stack, job.jobId, job.job.sha);
  } catch (err) {
    return { outcome: "failed", reason: (err as Error).message, attempts: [], services: [], warnings: [], applied: false };
  }
  try {
    const outside = await outsideCheckout(co.root, co.file).catch(
      (err: unknown) => `the stack file cannot be read: ${(err as Error).message}`,
    );
    if (outside) return { outcome: "invalid", reason: outside, attempts: [], services: [], warnings: [], applied: false };
    const result = await deployJob({ ...deps, stack: { ...stack, file: co.file }, checkout: co.root });
    if (result.outcome === "success" && result.objects?.length) {
      const removed = await pruneObjectVersions(ctx.docker, stack.name, result.objects, ctx.config.keepObjectVersions).catch(
        (err: unknown) => {
          log.warn({ err }, "could not remove old config and secret versions");
          return [];
        },
      );
      if (removed.length > 0) log.info({ removed }, "removed old config and secret versions");
    }
    return result;
  } finally {
    await co.cleanup();
  }
}

/**
 * What the deploy tells this loop while it resolves images: a newer deploy job pending for the stack
 * ends an image wait; the wait is shown to `swarmhook jobs` (state/) and to GitHub (still queued,
 * saying for which images); once the images are there, GitHub hears the deploy started. `over`
 * removes the wait from state/ when the deploy ended while still waiting (failed, superseded, stopped).
 */
function deployHooks(ctx: StackContext, runtime: StackRuntime, job: Pending, log: Logger): DeployHooks & { over(): Promise<void> } {
  const name = runtime.config.name;
  let waiting = false;
  const ended = async () => {
    if (!waiting) return;
    waiting = false;
    await writeImageWait(ctx.spool, name, null);
  };
  const progress = progressWriter(ctx, name, job, log);
  return {
    over: async () => {
      await ended();
      await progress.end();
    },
    onProgress: progress.write,
    stopping: ctx.stopping,
    newer: () =>
      runtime.pending.find((p) => p.job.kind === "deploy" && Date.parse(p.job.receivedAt) >= Date.parse(job.job.receivedAt))?.jobId,
    async onWaiting(images) {
      waiting = true;
      log.warn({ images, waitS: ctx.config.imageWaitMs / 1000 }, `waiting for images not in the registry yet: ${images.join(", ")}`);
      await writeImageWait(ctx.spool, name, {
        stack: name,
        jobId: job.jobId,
        sha: job.job.sha,
        images,
        since: ctx.clock.now().toISOString(),
      }).catch((err: unknown) => log.warn({ err }, "could not note the image wait in state/"));
      await ctx.reporter.waiting(job, runtime.config, images);
      await progress.write("waiting for images", []);
    },
    async onResolved(waitedMs) {
      if (waiting) ctx.metrics.imageWait.observe(waitedMs / 1000);
      await ended();
      await ctx.reporter.started(job, runtime.config);
    },
  };
}

/**
 * Publish a deploy's progress to state/_progress.<stack>.json (what `swarmhook follow`, the API and
 * the deployment page read), written only when it changed; `end` removes it. A write that fails is
 * logged once and never fails the deploy.
 */
function progressWriter(ctx: StackContext, stack: string, job: Pending, log: Logger) {
  const startedAt = ctx.clock.now().toISOString();
  let last = "";
  let warned = false;
  return {
    async write(phase: Progress["phase"], services: Progress["services"], stage?: Progress["stage"]) {
      const key = JSON.stringify([phase, services, stage]);
      if (key === last) return;
      last = key;
      const p = {
        stack,
        jobId: job.jobId,
        sha: job.job.sha,
        phase,
        startedAt,
        updatedAt: ctx.clock.now().toISOString(),
        ...(stage ? { stage } : {}),
        services,
      };
      await writeProgress(ctx.spool, stack, p).catch((err: unknown) => {
        if (!warned) log.warn({ err }, "could not publish the deploy's progress in state/");
        warned = true;
      });
    },
    async end() {
      if (last !== "") await writeProgress(ctx.spool, stack, null).catch(() => undefined);
    },
  };
}

/**
 * ON_FAILURE=rollback: a deploy that failed after Swarm applied it (wrong commit served, not
 * converged, digest policy) leaves the new version running; queue a rollback job to the release the
 * stack last ran well. Not after a rollback (no loop), not when Swarm already rolled back by itself,
 * not when nothing was applied. Returns the rollback job's id, or undefined.
 */
async function rollBackAfter(ctx: StackContext, stack: StackRuntime, failed: Pending, result: DeployResult, deployed: Deployed | null) {
  const { log, clock } = ctx;
  if (ctx.config.onFailure !== "rollback" || !result.applied || failed.job.kind !== "deploy") return undefined;
  if (!deployed?.record?.startsWith("done/") || deployed.sha === failed.job.sha) {
    log.warn(
      { stack: stack.config.name, jobId: failed.jobId },
      "deploy failed after it was applied, and no earlier good release is recorded: nothing to roll back to",
    );
    return undefined;
  }
  const now = clock.now();
  // the request names the record; the watcher reads the images from it again when it claims the job
  const job: RollbackRequest = {
    version: JOB_VERSION,
    kind: "rollback",
    deliveryId: rollbackJobId(deployed.sha, now),
    stack: stack.config.name,
    fromRecord: deployed.record,
    cause: "failed-deploy",
    failedJobId: failed.jobId,
    sender: "swarmhook watcher (ON_FAILURE=rollback)",
    receivedAt: now.toISOString(),
  };
  try {
    await publishJob(ctx.spool, job, now.getTime());
    log.warn(
      { stack: stack.config.name, jobId: failed.jobId, rollback: job.deliveryId, to: deployed.sha },
      "deploy failed after it was applied: rolling back to the last good release",
    );
    return job.deliveryId;
  } catch (err) {
    log.error({ err, stack: stack.config.name }, "could not queue the rollback (ON_FAILURE=rollback): the failed version stays");
    return undefined;
  }
}
