import type { Logger } from "pino";
import type { Clock } from "../../lib/clock.ts";
import type { ResultRecord } from "../../spool/index.ts";
import type { Pending } from "../coalesce.ts";
import type { ReportsConfig, StackConfig } from "../config.ts";
import { createGithubClient, type GithubClient } from "./github.ts";
import {
  listReports,
  whenReady,
  putReport,
  removeReport,
  type GithubStep,
  type NotifyMessage,
  type Outbox,
  type OutboxEntry,
} from "./outbox.ts";
import { deliverDue, urlHash, type SenderContext } from "./outbox-sender.ts";
import { claimedSteps, createNotifyPolicy, finishedSteps, startedSteps, waitingSteps } from "./report-policy.ts";

/** Reports of what the watcher does, for GitHub and the chat. Every call only writes to the outbox: it never waits on them. */
export interface Reporter {
  claimed(p: Pending, stack: StackConfig): Promise<void>;
  started(p: Pending, stack: StackConfig): Promise<void>;
  /** The job waits for images its registry does not have yet: the Deployment stays queued, saying which. */
  waiting(p: Pending, stack: StackConfig, images: string[]): Promise<void>;
  finished(rec: ResultRecord, stack: StackConfig | undefined): Promise<void>;
  /** News of a stack that is no job's outcome (drift, in sync again, self-heal stopped): to every chat target, whatever NOTIFY_ON says. */
  notice(id: string, message: NotifyMessage): Promise<void>;
  /** Deliver what is due now (the loop calls it every second; tests may too). */
  deliver(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

const LOOP_MS = 1000;
const realRepository = (repo: string) => repo !== "manual/deploy";

export interface ReporterDeps {
  config: ReportsConfig;
  /** Where reports wait: STATE_DIR/outbox on the watcher's node (openOutbox). */
  outbox: Outbox;
  log: Logger;
  clock: Clock;
  version: string;
  /** Injected in tests; built from config.github otherwise. */
  github?: GithubClient;
}

/**
 * The reporter and its delivery loop. Reports go to the outbox in STATE_DIR first (durable), then
 * out (outbox-sender.ts): per job, GitHub's steps strictly in order (the Deployment, then its
 * statuses); each report retried with backoff on its own, so a slow or dead endpoint delays no
 * deploy and no other job.
 * @example
 * const reporter = createReporter({ config: config.reports, outbox: openOutbox(config.stateDir), log, clock: systemClock, version });
 * reporter.start();
 */
export function createReporter(deps: ReporterDeps): Reporter {
  const { config, outbox, log, clock } = deps;
  const ensure = whenReady(outbox);
  const gh = deps.github ?? (config.github ? createGithubClient(config.github, log, deps.version) : undefined);
  const policy = createNotifyPolicy(config.notify);
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  let stopped = false;
  const sender: SenderContext = { config, outbox, log, clock, gh, logged: new Map(), stopped: () => stopped };

  const logUrl = (jobId: string, stack: string, sha: string) => fillLogUrl(config.logUrlTemplate, jobId, stack, sha);

  async function put(jobId: string, report: OutboxEntry["report"]): Promise<void> {
    await store(outbox, ensure, config.outboxMax, log, jobId, report, clock.now());
    kick();
  }

  async function github(p: { jobId: string; job: Pending["job"] }, stack: StackConfig, steps: GithubStep[]): Promise<void> {
    if (!gh || !realRepository(p.job.repository)) return;
    const link = logUrl(p.jobId, stack.name, p.job.sha);
    const base = {
      target: "github" as const,
      repository: p.job.repository,
      sha: p.job.sha,
      stack: stack.name,
      environment: stack.environment,
      production: stack.productionEnvironment,
      ...(stack.environmentUrl ? { environmentUrl: stack.environmentUrl } : {}),
      ...(link ? { logUrl: link } : {}),
    };
    for (const step of steps) await put(p.jobId, { ...base, step });
  }

  async function notify(rec: ResultRecord): Promise<void> {
    if (config.notify.targets.length === 0) return;
    const link = logUrl(rec.jobId, rec.stack ?? "-", rec.job?.sha ?? "") ?? null;
    for (const message of policy.decide(rec, link, clock.now())) {
      for (const [index, t] of config.notify.targets.entries())
        await put(rec.jobId, { target: "notify", index, urlHash: urlHash(t.url), message });
    }
  }

  function kick(): void {
    if (stopped || running) return;
    running = deliverDue(sender).finally(() => {
      running = null;
    });
  }

  return {
    claimed: (p, stack) => github(p, stack, claimedSteps(p.job.kind)),
    started: (p, stack) => github(p, stack, startedSteps()),
    waiting: (p, stack, images) => github(p, stack, waitingSteps(images)),
    async finished(rec, stack) {
      if (rec.job && stack) await github({ jobId: rec.jobId, job: rec.job }, stack, finishedSteps(rec));
      await notify(rec);
    },
    async notice(id, message) {
      for (const [index, t] of config.notify.targets.entries())
        await put(id, { target: "notify", index, urlHash: urlHash(t.url), message });
    },
    async deliver() {
      await running; // the pass under way, then one more
      kick();
      await running;
    },
    start() {
      const loop = () => {
        kick();
        if (!stopped) timer = setTimeout(loop, LOOP_MS);
      };
      loop();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** LOG_URL_TEMPLATE for one job: `{id}`, `{stack}` and `{sha}` filled in (URL-encoded). */
export function fillLogUrl(template: string | undefined, jobId: string, stack: string, sha: string): string | undefined {
  const e = encodeURIComponent;
  return template?.replaceAll("{id}", e(jobId)).replaceAll("{stack}", e(stack)).replaceAll("{sha}", e(sha));
}

/** Write one report to the outbox (kept under its bound); a failure is logged, never the deploy's. */
async function store(
  outbox: Outbox,
  ready: () => Promise<void>,
  max: number,
  log: Logger,
  jobId: string,
  report: OutboxEntry["report"],
  now: Date,
) {
  try {
    await ready();
    await trim(outbox, max, log);
    await putReport(outbox, { version: 1, jobId, createdAt: now.toISOString(), attempts: 0, nextAt: now.toISOString(), report }, now);
  } catch (err) {
    log.error({ err, jobId, target: report.target }, "could not write a report to the outbox: it is lost; the deploy goes on");
  }
}

/** Keep the outbox under its bound: the oldest reports go first, each said in the log. */
async function trim(outbox: Outbox, max: number, log: Logger): Promise<void> {
  const names = await listReports(outbox);
  for (const name of names.slice(0, Math.max(0, names.length - max + 1))) {
    await removeReport(outbox, name);
    log.warn({ report: name, outboxMax: max }, "outbox full: dropped its oldest report");
  }
}
