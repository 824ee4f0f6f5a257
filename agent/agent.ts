import { watch, type FSWatcher } from "node:fs";
import type { Logger } from "pino";
import {
  claimJob,
  cleanStaleTemp,
  ensureSpool,
  finishJob,
  jobIdFromFileName,
  listInterrupted,
  listPending,
  quarantine,
  readClaimed,
  sameRepository,
  type ClaimResult,
  type Job,
  type Outcome,
  type ResultRecord,
  type Spool,
} from "../spool/index.ts";
import type { AgentConfig, StackConfig } from "./config.ts";
import { deployJob } from "./deploy.ts";
import type { DockerRunner } from "./docker.ts";
import { newestFirst, readDeployed, writeDeployed } from "./state.ts";

interface Claimed {
  jobId: string;
  job: Job;
  claimedAt: Date;
}

interface StackRuntime {
  config: StackConfig;
  pending: Claimed[];
  running: Promise<void> | null;
}

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
  now?: () => Date;
}

const CLEAN_EVERY_MS = 60_000;
const branchOf = (ref: string) => (ref.startsWith("refs/heads/") ? ref.slice("refs/heads/".length) : null);

/**
 * The watcher: claims jobs, coalesces them per stack (newest wins, the rest superseded, older than
 * the last deploy stale), deploys one at a time per stack, verifies, and records every outcome.
 * @example
 * const agent = createAgent({ config, spool: openSpool(config.spoolDir), docker: createDockerRunner(), log });
 * await agent.start();
 * process.on("SIGTERM", () => agent.stop().then(() => process.exit(0)));
 */
export function createAgent(deps: AgentDeps): Agent {
  const { config, spool, docker, log } = deps;
  const now = deps.now ?? (() => new Date());
  const stacks = new Map<string, StackRuntime>(config.stacks.map((s) => [s.name, { config: s, pending: [], running: null }]));
  const unrecorded: ResultRecord[] = [];
  let stopping = false;
  let ticking = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  let lastSpoolProblem: string | undefined;
  let lastClean = 0;
  let recovered = false;

  const stackFor = (job: Job): StackRuntime | undefined => {
    const branch = branchOf(job.ref);
    return [...stacks.values()].find(
      ({ config: s }) => (!s.repository || sameRepository(s.repository, job.repository)) && (s.branches.length === 0 || (branch !== null && s.branches.includes(branch))),
    );
  };

  async function record(c: Claimed, outcome: Outcome, extra: Partial<ResultRecord> & { stack?: string | null; started?: Date | null } = {}): Promise<void> {
    const { started, stack, ...rest } = extra;
    const rec: ResultRecord = {
      outcome,
      jobId: c.jobId,
      job: c.job,
      stack: stack ?? null,
      timings: { received: c.job.receivedAt, claimed: c.claimedAt.toISOString(), started: started?.toISOString() ?? null, finished: now().toISOString() },
      attempts: [],
      services: [],
      warnings: [],
      ...rest,
    };
    await save(rec);
  }

  async function save(rec: ResultRecord): Promise<void> {
    const jobLog = log.child({ jobId: rec.jobId, sha: rec.job?.sha, stack: rec.stack });
    try {
      const where = await finishJob(spool, rec);
      const level = rec.outcome === "success" || rec.outcome === "superseded" || rec.outcome === "stale" ? "info" : "error";
      const took = rec.timings.started ? Date.parse(rec.timings.finished) - Date.parse(rec.timings.started) : 0;
      jobLog[level]({ outcome: rec.outcome, reason: rec.reason, record: where, durationMs: took, attempts: rec.attempts.length, warnings: rec.warnings }, `job ${rec.outcome}`);
    } catch (err) {
      // the job stays in work/ (deployed again after a restart); the record is retried every tick
      jobLog.error({ err: { message: (err as Error).message }, outcome: rec.outcome }, "could not record the outcome; will retry");
      unrecorded.push(rec);
    }
  }

  async function handle(r: ClaimResult): Promise<void> {
    if (r.status === "lost") return;
    if (r.status === "quarantined") {
      log.error({ file: r.name, reason: r.reason, record: `failed/${r.record}` }, "invalid job file quarantined");
      return;
    }
    const c: Claimed = { jobId: r.jobId, job: r.job, claimedAt: r.claimedAt };
    const stack = stackFor(r.job);
    if (!stack) {
      await record(c, "invalid", { reason: `no stack is configured for ${r.job.repository} ${r.job.ref}` });
      return;
    }
    log.info({ jobId: c.jobId, sha: c.job.sha, stack: stack.config.name, event: c.job.event }, "job claimed");
    stack.pending.push(c); // deployed by kickAll once the whole tick is claimed, so the newest wins
  }

  const kickAll = () => stacks.forEach(kick);

  function kick(stack: StackRuntime): void {
    if (stack.running || stopping || stack.pending.length === 0) return;
    stack.running = runStack(stack)
      .catch((err: Error) => log.error({ err: { message: err.message, stack: err.stack }, stack: stack.config.name }, "deploy loop error"))
      .finally(() => {
        stack.running = null;
        kick(stack);
      });
  }

  async function runStack(stack: StackRuntime): Promise<void> {
    const batch = stack.pending.splice(0).sort((a, b) => newestFirst(a.job, b.job));
    const [newest, ...older] = batch;
    if (!newest) return;
    const name = stack.config.name;
    for (const o of older) {
      await record(o, "superseded", { stack: name, supersededBy: newest.jobId, reason: `a newer commit (${newest.job.sha.slice(0, 12)}) was pending` });
    }
    const { deployed, problem } = await readDeployed(spool, name);
    if (problem) log.warn({ stack: name }, problem);
    if (deployed && Date.parse(newest.job.committedAt) < Date.parse(deployed.committedAt)) {
      await record(newest, "stale", {
        stack: name,
        reason: `commit ${newest.job.sha.slice(0, 12)} (${newest.job.committedAt}) is older than the deployed ${deployed.sha.slice(0, 12)} (${deployed.committedAt})`,
      });
      return;
    }
    const started = now();
    const jobLog = log.child({ jobId: newest.jobId, deliveryId: newest.job.deliveryId, sha: newest.job.sha, stack: name });
    const result = await deployJob({ docker, log: jobLog, policy: config, stack: stack.config, job: newest.job });
    if (result.outcome === "success") {
      await writeDeployed(spool, { stack: name, sha: newest.job.sha, committedAt: newest.job.committedAt, jobId: newest.jobId, finishedAt: now().toISOString() }).catch(
        (err: Error) => jobLog.error({ err: { message: err.message } }, "could not write state/; stale detection may miss this deploy"),
      );
    }
    await record(newest, result.outcome, {
      stack: name,
      started,
      ...(result.reason ? { reason: result.reason } : {}),
      attempts: result.attempts,
      services: result.services,
      warnings: result.warnings,
    });
  }

  function spoolProblem(err: unknown): void {
    const message = (err as Error).message;
    if (message !== lastSpoolProblem) log.error({ err: { message } }, "spool unavailable; still polling");
    lastSpoolProblem = message;
  }

  async function tick(): Promise<void> {
    if (ticking) {
      again = true;
      return;
    }
    ticking = true;
    try {
      do {
        again = false;
        for (const rec of unrecorded.splice(0)) await save(rec);
        if (Date.now() - lastClean > CLEAN_EVERY_MS) {
          lastClean = Date.now();
          const removed = await cleanStaleTemp(spool);
          if (removed.length > 0) log.warn({ removed }, "removed stale temp files left by dead writers");
        }
        if (!recovered) await recover(); // the spool was missing at start
        for (const name of await listPending(spool)) {
          if (stopping) return;
          await handle(await claimJob(spool, name, now()));
        }
        kickAll();
        if (lastSpoolProblem) log.info("spool available again");
        lastSpoolProblem = undefined;
      } while (again && !stopping);
    } catch (err) {
      spoolProblem(err);
      await ensureSpool(spool).catch(() => undefined); // a remounted, empty root gets its subdirectories
    } finally {
      ticking = false;
    }
  }

  async function recover(): Promise<void> {
    for (const name of await listInterrupted(spool)) {
      const jobId = jobIdFromFileName(name);
      const r = jobId === null ? await quarantine(spool, "work", name, "file name is not <delivery-id>.json", now()) : await readClaimed(spool, name, jobId, now());
      if (r.status === "claimed") log.warn({ jobId: r.jobId, sha: r.job.sha }, "job left in work/ by a dead run: deploying it again");
      await handle(r);
    }
    recovered = true;
  }

  return {
    async start() {
      log.info({ spool: spool.root, stacks: config.stacks.map((s) => s.name), pollIntervalMs: config.pollIntervalMs }, "watcher starting");
      try {
        await ensureSpool(spool);
        await recover();
      } catch (err) {
        recovered = false; // tried again by every tick until the spool is there
        spoolProblem(err);
      }
      const loop = async () => {
        await tick();
        if (!stopping) timer = setTimeout(loop, config.pollIntervalMs);
      };
      await loop();
      // inotify only speeds pickup up where it works (local writes); polling alone is relied on
      try {
        watcher = watch(spool.dir("new"), () => void tick());
        watcher.on("error", () => watcher?.close());
      } catch {
        watcher = undefined;
      }
    },
    async stop() {
      stopping = true;
      clearTimeout(timer);
      watcher?.close();
      const running = [...stacks.values()].map((s) => s.running).filter(Boolean);
      if (running.length > 0) log.info({ deploys: running.length }, "stopping: letting the running deploy finish");
      await Promise.all(running);
      const left = [...stacks.values()].reduce((n, s) => n + s.pending.length, 0);
      log.info({ leftInWork: left }, "watcher stopped");
    },
  };
}
