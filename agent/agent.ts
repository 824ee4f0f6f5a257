import { watch } from "node:fs";
import type { Logger } from "pino";
import { systemClock, type Clock } from "../lib/clock.ts";
import {
  SpoolError,
  claimJob,
  cleanStaleTemp,
  ensureSpool,
  listPending,
  publishJob,
  quarantine,
  pruneMarks,
  pruneRecords,
  rebuildIndex,
  readDeployed,
  reconcileJobId,
  recoverInterrupted,
  shortSha,
  triggerOf,
  type ClaimResult,
  type DeployJob,
  type Job,
  type ResultRecord,
  type Spool,
  writeWatcherStatus,
} from "../spool/index.ts";
import type { AgentConfig } from "./config.ts";
import type { DockerRunner } from "./docker.ts";
import { checkEngine } from "./engine.ts";
import { createAgentMetrics, type AgentMetrics } from "./metrics.ts";
import { branchTip, commitOnBranch, createGitToken, createGithubClient, type GithubClient } from "./report/index.ts";
import { openOutbox, pruneDeploymentIds, type Outbox } from "./report/index.ts";
import { createRecorder } from "./record/index.ts";
import { createReporter, type Reporter } from "./report/index.ts";
import {
  createRegistryClient,
  dockerCredentials,
  insecureRegistries,
  resolveRollback,
  type CredentialSource,
  type RegistryClient,
} from "./prepare/index.ts";
import { removeDeadCheckouts } from "./prepare/index.ts";
import { createReconciler } from "./reconcile/reconcile.ts";
import { blockedBy, copyJobId, deploys, stacksFor } from "./route.ts";
import { runStack, type StackContext } from "./run-stack.ts";
import { OUTCOMES_KEPT, claimedCount, createState, type AgentState, type StackRuntime } from "./state.ts";

export interface Agent {
  /** Recover `work/`, then poll `new/` every POLL_INTERVAL_MS until stopped. */
  start(): Promise<void>;
  /** Stop claiming; wait for running deploys to finish. Claimed jobs not started stay in `work/`. */
  stop(): Promise<void>;
}

export interface AgentDeps {
  config: Readonly<AgentConfig>;
  spool: Spool;
  docker: DockerRunner;
  log: Logger;
  clock?: Clock;
  /** Where the watcher counts what it does; a fresh registry when not given. */
  metrics?: AgentMetrics;
  /** The watcher's version (GitHub sees it in the User-Agent). */
  version?: string;
  /** Where reports go; built from config.reports when not given. */
  reporter?: Reporter;
  /** Where reports wait; STATE_DIR/outbox when not given. */
  outbox?: Outbox;
  /** How often a lasting engine problem is logged again (default a minute). */
  engineLogEveryMs?: number;
  /** Where registry credentials come from; the Docker CLI's config of this process's environment when not given. */
  credentials?: CredentialSource;
  /** Who answers image lookups; a client of the real registries when not given (bench/images swaps it for its baseline). */
  registry?: RegistryClient;
}

const CLEAN_EVERY_MS = 60_000;
const PRUNE_EVERY_MS = 3600_000;
const ENGINE_OK_MS = 30_000;

/**
 * The watcher: claims jobs, coalesces them per stack (newest received wins, the rest superseded, what
 * the branch moved past stale), deploys one at a time per stack, verifies, and records every outcome.
 * Its memory is one AgentState; the decisions live in coalesce.ts, the records in records.ts.
 * @example
 * const agent = createAgent({ config, spool: openSpool(config.spoolDir), docker: createDockerRunner(), log });
 * await agent.start();
 * process.on("SIGTERM", () => agent.stop().then(() => process.exit(0)));
 */
export function createAgent(deps: AgentDeps): Agent {
  const { config, spool, log } = deps;
  const clock = deps.clock ?? systemClock;
  const state = createState(config, deps.engineLogEveryMs);
  const metrics = deps.metrics ?? createAgentMetrics("unknown");
  const github = config.reports.github;
  const gh = github ? createGithubClient(github, log, deps.version ?? "unknown") : undefined;
  const outbox = deps.outbox ?? openOutbox(config.stateDir);
  const reporter =
    deps.reporter ??
    createReporter({ config: config.reports, outbox, log, clock, version: deps.version ?? "unknown", ...(gh ? { github: gh } : {}) });
  const gitToken = github && gh ? createGitToken(github, gh) : undefined;
  const onRecorded = (rec: ResultRecord) =>
    reporter.finished(noteOutcome(state, rec), rec.stack ? state.stacks.get(rec.stack)?.config : undefined);
  const recorder = createRecorder({ spool, log, clock, unrecorded: state.unrecorded, metrics, onRecorded });
  const onBranch = gh ? (repository: string, branch: string, sha: string) => commitOnBranch(gh, repository, branch, sha) : undefined;
  const registry =
    deps.registry ??
    createRegistryClient({
      credentials: deps.credentials ?? dockerCredentials(),
      insecure: insecureRegistries(deps.docker),
      onRequest: (host, outcome) => metrics.registryRequests.inc({ registry: host, outcome }),
    });
  const ctx: StackContext = {
    config,
    spool,
    docker: deps.docker,
    log,
    clock,
    recorder,
    metrics,
    reporter,
    gitToken,
    onBranch,
    registry,
    stopping: () => state.stopping,
    blockedBy: (stack, job) => dependencyBlock(state, spool, stack, job),
  };
  const tick = () => runTick(state, ctx);
  const reconciler = reconcilerOf(state, ctx, tick, gh);

  return {
    async start() {
      log.info({ spool: spool.root, stacks: config.stacks.map((s) => s.name), pollIntervalMs: config.pollIntervalMs }, "watcher starting");
      try {
        logModes(log, await ensureSpool(spool));
        await recover(state, ctx);
      } catch (err) {
        spoolProblem(state, ctx, err); // tried again by every tick until the spool is there
      }
      reporter.start();
      const loop = async () => {
        await tick();
        if (!state.stopping) state.timer = setTimeout(loop, config.pollIntervalMs);
      };
      await loop();
      // inotify only speeds pickup up where it works (local writes); polling alone is relied on
      try {
        state.watcher = watch(spool.dir("new"), () => void tick());
        state.watcher.on("error", () => state.watcher?.close());
      } catch {
        state.watcher = undefined;
      }
      reconciler.start();
    },
    async stop() {
      state.stopping = true;
      clearTimeout(state.timer);
      state.watcher?.close();
      for (const w of state.inTick.splice(0)) w.cancel("the watcher is stopping");
      await reconciler.stop();
      const running = [...state.stacks.values()].map((s) => s.running).filter(Boolean);
      if (running.length > 0) log.info({ deploys: running.length }, "stopping: letting the running deploy finish");
      await Promise.all(running);
      await reporter.stop();
      const left = claimedCount(state);
      log.info({ leftInWork: left }, "watcher stopped");
    },
  };
}

/** The reconcile loop, deciding inside this watcher's ticks and claiming what it queues as a tick would. */
function reconcilerOf(state: AgentState, ctx: StackContext, tick: () => Promise<void>, gh: GithubClient | undefined) {
  return createReconciler({
    ctx,
    stacks: () => state.stacks.values(),
    inTick: (fn) =>
      new Promise((resolve, reject) => {
        state.inTick.push({ run: () => fn().then(resolve, reject), cancel: (reason) => reject(new Error(reason)) });
        void tick();
      }),
    claim: (name) => claimOne(state, ctx, name),
    githubTip: gh ? (repository, branch) => branchTip(gh, repository, branch) : undefined,
  });
}

/** One scan: retry refused records, clean tmp/, claim everything in new/, then start each stack's deploy. */
async function runTick(state: AgentState, ctx: StackContext): Promise<void> {
  if (state.ticking) {
    state.again = true;
    return;
  }
  state.ticking = true;
  try {
    do {
      state.again = false;
      await ctx.recorder.retry();
      await cleanTemp(state, ctx);
      if (!state.recovered) await recover(state, ctx); // the spool was missing at start
      const names = await listPending(ctx.spool);
      const claimed = claimedCount(state);
      ctx.metrics.pending.set(names.length + claimed);
      const queued = names.length + claimed > 0;
      // while this node cannot deploy, jobs wait in new/: nothing is claimed, nothing fails
      if ((queued || state.inTick.length > 0) && !(await engineReady(state, ctx, names.length))) {
        for (const w of state.inTick.splice(0)) w.cancel("the Docker engine is not ready");
        continue;
      }
      for (const name of names) {
        if (state.stopping) return;
        await claimOne(state, ctx, name);
      }
      for (const w of state.inTick.splice(0)) await w.run();
      for (const stack of state.stacks.values()) kick(state, ctx, stack);
      if (state.spoolProblem) ctx.log.info("spool available again");
      state.spoolProblem = undefined;
    } while (state.again && !state.stopping);
  } catch (err) {
    spoolProblem(state, ctx, err);
    await ensureSpool(ctx.spool).catch(() => undefined); // a remounted, empty root gets its subdirectories
  } finally {
    state.ticking = false;
  }
}

/**
 * Whether the Docker engine can take a deploy: a good answer is trusted for ENGINE_OK_MS; a problem is
 * logged when it starts and then once a minute, and written to state/_watcher.json for `swarmhook jobs`.
 */
async function engineReady(state: AgentState, ctx: StackContext, waiting: number): Promise<boolean> {
  const now = ctx.clock.now();
  if (now.getTime() < state.engineOkUntil) return true;
  const p = await checkEngine(ctx.docker);
  ctx.metrics.engineUp.set(p === null ? 1 : 0);
  if (p === null) {
    state.engineOkUntil = now.getTime() + ENGINE_OK_MS;
    if (state.engineWait) {
      ctx.log.info({ waitedMs: now.getTime() - state.engineWait.since.getTime() }, "Docker engine available again: deploying what waited");
      state.engineWait = undefined;
      await writeWatcherStatus(ctx.spool, null).catch(() => undefined);
    }
    return true;
  }
  const w = state.engineWait?.problem === p.problem ? state.engineWait : { since: now, problem: p.problem, loggedAt: 0 };
  state.engineWait = w;
  if (now.getTime() - w.loggedAt >= state.engineLogEveryMs) {
    w.loggedAt = now.getTime();
    ctx.log.warn({ ...p, waiting, since: w.since.toISOString() }, "waiting for the Docker engine: jobs stay in new/");
    await writeWatcherStatus(ctx.spool, { waitingSince: w.since.toISOString(), checkedAt: now.toISOString(), ...p }).catch((err: unknown) =>
      ctx.log.error({ err }, "could not write state/_watcher.json"),
    );
  }
  return false;
}

/** Claim one entry of new/. Whatever goes wrong with it is logged once, naming it, and never stops the others. */
async function claimOne(state: AgentState, ctx: StackContext, name: string): Promise<void> {
  try {
    await route(state, ctx, await claimJob(ctx.spool, name, ctx.clock.now()), true);
    state.entryProblems.delete(name);
  } catch (err) {
    if (err instanceof SpoolError && err.code === "root_missing") throw err;
    const message = (err as Error).message;
    if (state.entryProblems.get(name) !== message)
      ctx.log.error({ err, entry: `new/${name}` }, "spool entry skipped: it cannot be claimed");
    state.entryProblems.set(name, message);
  }
}

async function cleanTemp(state: AgentState, ctx: StackContext): Promise<void> {
  const now = ctx.clock.now().getTime();
  if (now - state.lastClean <= CLEAN_EVERY_MS) return;
  state.lastClean = now;
  const removed = await cleanStaleTemp(ctx.spool, now);
  if (removed.length > 0) ctx.log.warn({ removed }, "removed stale temp files left by dead writers");
  if (now - state.lastPrune <= PRUNE_EVERY_MS) return;
  state.lastPrune = now;
  const pruned = await pruneMarks(ctx.spool, now);
  if (pruned > 0) ctx.log.info({ pruned }, "removed delivery markers older than a week (a redelivery of those deploys again)");
  await pruneDeploymentIds(openOutbox(ctx.config.stateDir), now);
  const records = await pruneRecords(ctx.spool, ctx.config.historyKeepMs, now);
  if (records > 0)
    ctx.log.info({ removed: records, keepDays: ctx.config.historyKeepMs / 86_400_000 }, "removed records older than HISTORY_KEEP_DAYS");
}

async function recover(state: AgentState, ctx: StackContext): Promise<void> {
  const dead = await removeDeadCheckouts(ctx.config.stateDir);
  if (dead.length > 0) ctx.log.warn({ jobs: dead }, "removed checkouts a stopped watcher left behind (with any decrypted env_file)");
  const indexed = await rebuildIndex(ctx.spool); // lines a crash lost, records from before the index
  ctx.log.debug({ records: indexed }, "history index rebuilt");
  for (const r of await recoverInterrupted(ctx.spool, ctx.clock.now())) {
    if (r.status === "claimed") ctx.log.warn({ jobId: r.jobId, kind: r.job.kind }, "job left in work/ by a dead run: deploying it again");
    await route(state, ctx, r);
  }
  state.recovered = true;
}

/**
 * Hand a claimed job to its stack (deployed once the whole tick is claimed, so the newest wins). A
 * fresh claim is reported (GitHub: Deployment queued); a job recovered from work/ was reported by
 * the run that claimed it.
 */
async function route(state: AgentState, ctx: StackContext, r: ClaimResult, fresh = false): Promise<void> {
  if (r.status === "lost" || r.status === "duplicate") {
    if (r.status === "duplicate") ctx.log.warn("a second copy of a delivery already in work/ was dropped: same job");
    return;
  }
  if (r.status === "quarantined") {
    ctx.log.error({ file: r.name, reason: r.reason, record: `failed/${r.record}` }, "invalid spool entry quarantined");
    return;
  }
  const job = await judgeRequest(state, ctx, r);
  if (!job) return;
  const pending = { jobId: r.jobId, job, claimedAt: r.claimedAt };
  const [stack, ...more] = stacksFor(state.stacks.values(), job);
  if (!stack) {
    const reason =
      job.kind === "rollback"
        ? `no stack named ${job.stack} is configured`
        : job.stack
          ? `stack ${job.stack} is not configured to deploy ${job.repository} ${job.ref}`
          : `no stack is configured for ${job.repository} ${job.ref}`;
    await ctx.recorder.finish(pending, "invalid", { reason });
    return;
  }
  if (job.kind === "deploy" && more.length > 0) await copyForStacks(state, ctx, r.jobId, job, more);
  const before = await deployedByReconcile(ctx, stack, job);
  if (before) {
    await ctx.recorder.finish(pending, "superseded", {
      stack: stack.config.name,
      supersededBy: before,
      reason: `the reconcile loop deployed ${shortSha(job.sha)} before this webhook arrived (${before})`,
    });
    return;
  }
  ctx.log.info({ jobId: r.jobId, sha: job.sha, stack: stack.config.name, trigger: triggerOf(job) }, "job claimed");
  stack.pending.push(pending);
  if (fresh) await ctx.reporter.claimed(pending, stack.config);
}

/**
 * The reconcile job that is deploying, or deployed, the commit of a webhook's job that came late: the
 * push is not deployed a second time. A redelivery, an enqueue and any other commit deploy as usual.
 */
async function deployedByReconcile(ctx: StackContext, stack: StackRuntime, job: Job): Promise<string | null> {
  if (job.kind !== "deploy" || job.event === "reconcile" || job.event === "manual" || job.redelivery) return null;
  if (ctx.config.reconcileIntervalMs === 0 || !stack.config.reconcile) return null; // the loop queues nothing
  const id = reconcileJobId(stack.config.name, job.sha);
  if (stack.current?.jobId === id) return id;
  const { deployed, problem } = await readDeployed(ctx.spool, stack.config.name);
  if (problem) ctx.log.warn({ stack: stack.config.name }, problem); // said here: the state file is quarantined now
  return deployed?.jobId === id && deployed.sha === job.sha ? id : null;
}

/**
 * A claimed request as the watcher will deploy it: a deploy as it is (its stack, repository, branch
 * and ancestry are judged next), a rollback resolved from the watcher's own record. A rollback that
 * names no record of ours, or not a success of a configured stack, is quarantined with the reason.
 */
async function judgeRequest(state: AgentState, ctx: StackContext, r: Extract<ClaimResult, { status: "claimed" }>): Promise<Job | null> {
  if (r.job.kind === "deploy") return r.job;
  const req = r.job;
  const configured = [...state.stacks.values()].some((s) => s.config.name === req.stack);
  const resolved = configured ? await resolveRollback(ctx.spool, req) : { reason: `no stack named ${req.stack} is configured` };
  if ("job" in resolved) return resolved.job;
  const reason = `rollback refused: ${resolved.reason}`;
  const q = await quarantine(ctx.spool, "work", `${r.jobId}.json`, reason, ctx.clock.now());
  ctx.log.error(
    { jobId: r.jobId, fromRecord: req.fromRecord, reason, record: q.status === "quarantined" ? `failed/${q.record}` : null },
    "rollback refused",
  );
  return null;
}

/**
 * A push that deploys several stacks: the first (dependencies first) takes the job itself, and each
 * other stack gets the watcher's own copy, named for it (`stack`), with an id derived from the push's
 * (copyJobId), queued in new/ and claimed by this same tick. Publishing a copy again (a recovery, a
 * redelivery) queues nothing new unless the copy ended in a retryable outcome.
 */
async function copyForStacks(state: AgentState, ctx: StackContext, jobId: string, job: DeployJob, stacks: StackRuntime[]): Promise<void> {
  for (const s of stacks) {
    const copy: DeployJob = { ...job, deliveryId: copyJobId(job.deliveryId, s.config.name), stack: s.config.name };
    const r = await publishJob(ctx.spool, copy, ctx.clock.now().getTime());
    ctx.log.info(
      { jobId, copy: r.jobId, stack: s.config.name, status: r.status },
      `the push deploys ${s.config.name} too: ${r.status === "queued" ? "queued" : r.status} ${r.jobId}`,
    );
  }
  state.again = true; // claimed before this tick ends
}

/** blockedBy for one stack's job: over the stacks it depends on that deploy the job's repository and branch. */
function dependencyBlock(state: AgentState, spool: Spool, stack: StackRuntime, job: DeployJob): Promise<string | null> {
  const deps = stack.config.dependsOn.filter((d) => {
    const dep = state.stacks.get(d);
    return dep !== undefined && deploys(dep.config, job);
  });
  return blockedBy(
    deps,
    job.sha,
    (name, sha) => state.stacks.get(name)?.outcomes.get(sha),
    async (name) => (await readDeployed(spool, name)).deployed?.sha ?? null,
  );
}

/** The outcome of a stack's job for its commit, for the stacks that depend on it (the newest OUTCOMES_KEPT). */
function noteOutcome(state: AgentState, rec: ResultRecord): ResultRecord {
  const stack = rec.stack ? state.stacks.get(rec.stack) : undefined;
  if (!stack || rec.job?.kind !== "deploy") return rec;
  stack.outcomes.delete(rec.job.sha);
  stack.outcomes.set(rec.job.sha, { outcome: rec.outcome, reason: rec.reason });
  for (const sha of stack.outcomes.keys()) if (stack.outcomes.size > OUTCOMES_KEPT) stack.outcomes.delete(sha);
  return rec;
}

/**
 * Start a stack's deploy loop when it has jobs and is idle, and when no stack it depends on has a
 * deploy running or jobs pending (those deploy first; their outcome may block this one). When a
 * loop ends, what arrived meanwhile and the stacks waiting for it are started.
 */
function kick(state: AgentState, ctx: StackContext, stack: StackRuntime): void {
  if (stack.running || state.stopping || stack.pending.length === 0) return;
  const waitFor = stack.config.dependsOn.find((d) => {
    const dep = state.stacks.get(d);
    return dep !== undefined && (dep.running !== null || dep.pending.length > 0);
  });
  if (waitFor) {
    ctx.log.debug({ stack: stack.config.name, dependsOn: waitFor }, `waiting for ${waitFor} to deploy first`);
    return;
  }
  stack.runs += 1;
  stack.running = runStack(ctx, stack).then(
    () => {
      stack.running = null;
      kick(state, ctx, stack); // what arrived during the deploy
      for (const s of state.stacks.values()) if (s.config.dependsOn.includes(stack.config.name)) kick(state, ctx, s);
    },
    (err: unknown) => {
      stack.running = null; // the next tick tries again
      ctx.log.error({ err, stack: stack.config.name }, "deploy loop error");
    },
  );
}

/** What the start-up corrected in the spool's modes, and what it could not (a file or directory not the watcher's own). */
function logModes(log: Logger, r: { corrected: string[]; problems: string[] }): void {
  if (r.corrected.length > 0)
    log.warn({ corrected: r.corrected }, "spool modes corrected: the API's group may write only tmp/, new/ and ids/");
  if (r.problems.length > 0)
    log.error({ problems: r.problems }, "spool modes NOT as they must be: the API's group can change what the watcher decides from");
}

function spoolProblem(state: AgentState, ctx: StackContext, err: unknown): void {
  const message = (err as Error).message;
  ctx.metrics.spoolErrors.inc();
  if (message !== state.spoolProblem) ctx.log.error({ err }, "spool unavailable; still polling");
  state.spoolProblem = message;
}
