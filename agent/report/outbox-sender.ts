import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../../lib/clock.ts";
import {
  listReports,
  readDeploymentId,
  readReport,
  removeReport,
  updateReport,
  writeDeploymentId,
  type Outbox,
  type OutboxEntry,
} from "./outbox.ts";
import type { ReportsConfig } from "../config.ts";
import { describeGithubError, isPermanent, sendGithubStep, type GithubClient } from "./github.ts";
import { PermanentNotifyError, sendNotification } from "./notify.ts";

const FIRST_RETRY_MS = 2000;
const OUTAGE_MS = 10 * 60_000;
const EARLY_MAX_MS = 60_000;
const LATE_MAX_MS = 15 * 60_000;
/** A report undelivered this long after its first failure is dropped (logged): GitHub and chat have moved on. */
export const GIVE_UP_MS = 25 * 3600_000;

/** When to try again: doubling from 2 s, at most a minute apart for the first ten minutes of an outage, then at most 15 minutes. */
export function retryDelay(attempts: number, outageMs: number): number {
  const doubling = FIRST_RETRY_MS * 2 ** Math.min(20, Math.max(0, attempts - 1));
  return Math.min(doubling, outageMs < OUTAGE_MS ? EARLY_MAX_MS : LATE_MAX_MS);
}

/** Which NOTIFY_URLS entry a report was made for, without writing the URL (a secret) to disk. */
export const urlHash = (url: string): string => createHash("sha256").update(url).digest("hex").slice(0, 16);

export interface SenderContext {
  config: ReportsConfig;
  outbox: Outbox;
  log: Logger;
  clock: Clock;
  gh: GithubClient | undefined;
  /** When each warn key was last logged (one line a minute per key). */
  logged: Map<string, number>;
  stopped: () => boolean;
}

/**
 * One pass over the outbox, oldest first: every report that is due is sent; per job, GitHub's
 * reports strictly in order (a job whose earlier report waits is skipped until it went out).
 */
export async function deliverDue(ctx: SenderContext): Promise<void> {
  let names: string[];
  try {
    names = await listReports(ctx.outbox);
  } catch (err) {
    return warnOnce(ctx, "outbox", { err }, "outbox unreadable; reports wait");
  }
  const blocked = new Set<string>(); // jobs with an earlier GitHub report still waiting
  for (const name of names) {
    if (ctx.stopped()) return;
    await deliverOne(ctx, name, blocked).catch((err: unknown) => warnOnce(ctx, name, { err, report: name }, "report not delivered; kept"));
  }
}

async function deliverOne(ctx: SenderContext, name: string, blocked: Set<string>): Promise<void> {
  const read = await readReport(ctx.outbox, name);
  if (read === null) return;
  if ("problem" in read) {
    ctx.log.error({ report: name, problem: read.problem }, "not an outbox entry: removed");
    return removeReport(ctx.outbox, name);
  }
  const { entry } = read;
  const now = ctx.clock.now();
  const ordered = entry.report.target === "github";
  if (ordered && blocked.has(entry.jobId)) return;
  if (Date.parse(entry.nextAt) > now.getTime()) {
    if (ordered) blocked.add(entry.jobId);
    return;
  }
  try {
    await send(ctx, entry);
    await removeReport(ctx.outbox, name);
    if (entry.attempts > 0) ctx.log.info({ report: name, attempts: entry.attempts + 1 }, "report delivered after retries");
  } catch (err) {
    if (ordered) blocked.add(entry.jobId);
    await failed(ctx, name, entry, err, now);
  }
}

async function send(ctx: SenderContext, entry: OutboxEntry): Promise<void> {
  const r = entry.report;
  const { config, outbox, gh } = ctx;
  if (r.target === "notify") {
    const t = config.notify.targets[r.index];
    if (!t || urlHash(t.url) !== r.urlHash) throw new PermanentNotifyError("NOTIFY_URLS changed since this report was made");
    return sendNotification(t, r.message, config.notify.secret);
  }
  if (!gh) throw new PermanentNotifyError("GitHub reporting is no longer configured");
  let id = await readDeploymentId(outbox, entry.jobId);
  if (r.step.type === "deployment_status" && id === null) {
    // its Deployment was never created (the watcher died between claim and report): create it first
    const create = { ...entry, report: { ...r, step: { type: "deployment" as const, description: "swarmhook deploy" } } };
    id = await sendGithubStep(gh, create, null);
    if (id !== null) await writeDeploymentId(outbox, entry.jobId, id);
  }
  const made = await sendGithubStep(gh, entry, id);
  if (r.step.type === "deployment" && made !== null) await writeDeploymentId(outbox, entry.jobId, made);
}

async function failed(ctx: SenderContext, name: string, entry: OutboxEntry, err: unknown, now: Date): Promise<void> {
  const why = err instanceof PermanentNotifyError ? err.message : describeGithubError(err);
  const first = entry.firstFailureAt ? Date.parse(entry.firstFailureAt) : now.getTime();
  const fields = { report: name, target: entry.report.target, jobId: entry.jobId, attempts: entry.attempts + 1, error: why };
  if (err instanceof PermanentNotifyError || isPermanent(err) || now.getTime() - first > GIVE_UP_MS) {
    ctx.log.error(fields, "report dropped: the endpoint refuses it, or it has failed for over a day");
    return removeReport(ctx.outbox, name);
  }
  const delay = retryDelay(entry.attempts + 1, now.getTime() - first);
  warnOnce(ctx, entry.report.target, { ...fields, retryInMs: delay }, "report not delivered; will retry");
  await updateReport(ctx.outbox, name, {
    ...entry,
    attempts: entry.attempts + 1,
    nextAt: new Date(now.getTime() + delay).toISOString(),
    firstFailureAt: new Date(first).toISOString(),
    lastError: why.slice(0, 500),
  });
}

/** At most one warn line a minute per key: an outage of GitHub does not flood the journal. */
function warnOnce(ctx: SenderContext, key: string, fields: object, msg: string): void {
  const t = ctx.clock.now().getTime();
  if (t - (ctx.logged.get(key) ?? 0) < 60_000) return;
  ctx.logged.set(key, t);
  ctx.log.warn(fields, msg);
}
