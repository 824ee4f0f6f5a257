import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { isoTime } from "../../lib/zod.ts";
import {
  COMMIT_SHA,
  REPOSITORY,
  groupCommit,
  isUnreadable,
  parseJson,
  publishNoClobber,
  readBounded,
  replaceWith,
  stamp,
  syncDir,
  toSpoolError,
  writeTempFile,
} from "../../spool/index.ts";

/**
 * The outbox: reports of deploy outcomes waiting to reach GitHub or a chat, one file each, so they
 * survive a restart of the watcher and never hold up a deploy. It holds what the watcher's
 * credentials will be used for (which repository, which chat), so it lives in STATE_DIR on the
 * watcher's node (mode 0700), never on the shared spool the API can write. `swarmhook jobs` on that
 * node counts what is undelivered.
 */
export interface Outbox {
  readonly dir: string;
  file(name: string): string;
  /** A fresh temp path inside the outbox's own `.tmp/`, for a file about to be linked in. */
  temp(base: string, data: string): Promise<string>;
  sync(): Promise<void>;
}

/** `<stateDir>/outbox`; nothing is touched until `ensureOutbox`. */
export function openOutbox(stateDir: string): Outbox {
  const dir = path.join(path.resolve(stateDir), "outbox");
  const tmp = path.join(dir, ".tmp");
  return Object.freeze({
    dir,
    file: (name: string) => path.join(dir, name),
    temp: (base: string, data: string) => writeTempFile(tmp, base, data, 0o600),
    sync: groupCommit(() => syncDir(dir)),
  });
}

/** Create the outbox (0700: the watcher's alone) and its temp directory; correct the modes of an existing one. */
export async function ensureOutbox(box: Outbox): Promise<void> {
  try {
    await fs.mkdir(path.join(box.dir, ".tmp"), { recursive: true, mode: 0o700 });
    await fs.chmod(box.dir, 0o700);
  } catch (err) {
    throw toSpoolError(err, `creating the outbox ${box.dir}`);
  }
}

/** `ensureOutbox` once: later calls share its success; a failure is tried again by the next call. */
export function whenReady(box: Outbox): () => Promise<void> {
  let ready: Promise<void> | null = null;
  return () =>
    (ready ??= ensureOutbox(box).catch((err: unknown) => {
      ready = null;
      throw err;
    }));
}

const listBox = async (box: Outbox): Promise<string[]> =>
  fs.readdir(box.dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw toSpoolError(err, `listing ${box.dir}`);
  });
const MAX_ENTRY_BYTES = 64 * 1024;
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const ENTRY_NAME = /^\d{8}T\d{9}Z-\d{6}-[A-Za-z0-9._-]{1,100}\.(github|notify)\.json$/;
/** GitHub cuts a status description at 140 characters; so does every report. */
export const MAX_DESCRIPTION = 140;
const description = z.string().max(MAX_DESCRIPTION);

export const DEPLOYMENT_STATES = ["queued", "in_progress", "success", "failure", "error", "inactive"] as const;
export const COMMIT_STATES = ["pending", "success", "failure", "error"] as const;

export const GithubStepSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("deployment"), description }),
  z.strictObject({ type: z.literal("deployment_status"), state: z.enum(DEPLOYMENT_STATES), description }),
  z.strictObject({ type: z.literal("commit_status"), state: z.enum(COMMIT_STATES), description }),
]);
export type GithubStep = z.infer<typeof GithubStepSchema>;

/** The documented body of a generic notification (and what Slack's and Discord's messages are made from). */
export const NotifyMessageSchema = z.strictObject({
  /** drift/in_sync/degraded/heal_stopped: the reconcile loop's news of a stack (sha: the deployed commit; since: the episode's start). */
  event: z.enum(["deploy", "rollback", "recovered", "drift", "in_sync", "degraded", "heal_stopped"]),
  stack: z.string().nullable(),
  repository: z.string().nullable(),
  sha: z.string().nullable(),
  outcome: z.string(),
  reason: z.string().max(2000).nullable(),
  deliveryId: z.string(),
  durationMs: z.number().nonnegative().nullable(),
  url: z.string().nullable(),
  /** For `recovered`: how many failures in a row there were, and since when. */
  failures: z.number().int().positive().optional(),
  since: isoTime.optional(),
});
export type NotifyMessage = z.infer<typeof NotifyMessageSchema>;

export const ReportSchema = z.discriminatedUnion("target", [
  z.strictObject({
    target: z.literal("github"),
    repository: z.string().regex(REPOSITORY),
    sha: z.string().regex(COMMIT_SHA),
    stack: z.string(),
    environment: z.string().min(1).max(255),
    environmentUrl: z.string().optional(),
    logUrl: z.string().optional(),
    production: z.boolean(),
    step: GithubStepSchema,
  }),
  z.strictObject({
    target: z.literal("notify"),
    /** Which NOTIFY_URLS entry, and a hash of it: the URL itself (a secret, for Slack and Discord) is never written here. */
    index: z.number().int().min(0),
    urlHash: z.string().regex(/^[0-9a-f]{16}$/),
    message: NotifyMessageSchema,
  }),
]);
export type Report = z.infer<typeof ReportSchema>;

export const OutboxEntrySchema = z.strictObject({
  version: z.literal(1),
  jobId: z.string().regex(JOB_ID),
  createdAt: isoTime,
  attempts: z.number().int().min(0),
  nextAt: isoTime,
  firstFailureAt: isoTime.optional(),
  lastError: z.string().max(500).optional(),
  report: ReportSchema,
});
export type OutboxEntry = z.infer<typeof OutboxEntrySchema>;

let sequence = 0;

/**
 * Put one report into the outbox, durably (fsynced file, fsynced directory), named so that names
 * sort in the order reports were made: `<stamp>-<sequence>-<job id>.<target>.json`.
 */
export async function putReport(box: Outbox, entry: OutboxEntry, now: Date): Promise<string> {
  const parsed = OutboxEntrySchema.parse(entry);
  sequence = (sequence + 1) % 1_000_000;
  const name = `${stamp(now)}-${String(sequence).padStart(6, "0")}-${parsed.jobId}.${parsed.report.target}.json`;
  try {
    const tmp = await box.temp(`outbox-${parsed.jobId}`, `${JSON.stringify(parsed)}\n`);
    if (!(await publishNoClobber(tmp, box.file(name)))) throw new Error(`outbox/${name} exists`);
    await box.sync();
  } catch (err) {
    throw toSpoolError(err, `writing outbox/${name}`);
  }
  return name;
}

/** The reports waiting, oldest first (names only: the outbox is small and bounded). */
export async function listReports(box: Outbox): Promise<string[]> {
  return (await listBox(box)).filter((n) => ENTRY_NAME.test(n)).sort();
}

/** One report, checked; what is not one comes back as `{ problem }` (the caller removes it, logging why). */
export async function readReport(box: Outbox, name: string): Promise<{ entry: OutboxEntry } | { problem: string } | null> {
  const text = await readBounded(box.file(name), MAX_ENTRY_BYTES).catch((err: unknown) => {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === "ENOENT") return null;
    throw err;
  });
  if (text === null) return null;
  const r = parseJson(text, OutboxEntrySchema);
  return "value" in r ? { entry: r.value } : { problem: `not an outbox entry of this version: ${r.problem}` };
}

/** Rewrite a report in place (its attempts and next try), atomically. */
export async function updateReport(box: Outbox, name: string, entry: OutboxEntry): Promise<void> {
  const data = `${JSON.stringify(OutboxEntrySchema.parse(entry))}\n`;
  await replaceWith(await box.temp(`outbox-${entry.jobId}`, data), box.file(name));
}

export async function removeReport(box: Outbox, name: string): Promise<void> {
  await fs.rm(box.file(name), { force: true, recursive: true });
}

/** The id GitHub gave the Deployment of a job: `outbox/<job id>.deployment`, kept until the job's last status is delivered. */
export async function readDeploymentId(box: Outbox, jobId: string): Promise<number | null> {
  const text = await readBounded(box.file(`${jobId}.deployment`), 64).catch(() => null);
  if (text === null || isUnreadable(text) || !/^\d{1,18}\s*$/.test(text)) return null;
  return Number(text);
}

export async function writeDeploymentId(box: Outbox, jobId: string, id: number): Promise<void> {
  await replaceWith(await box.temp(`deployment-${jobId}`, `${id}\n`), box.file(`${jobId}.deployment`));
  await box.sync();
}

/** Remove Deployment ids older than `keepMs` (a job's statuses are long delivered by then); returns how many. */
export async function pruneDeploymentIds(box: Outbox, now: number, keepMs = 7 * 24 * 3600_000): Promise<number> {
  let removed = 0;
  for (const name of await listBox(box)) {
    if (!name.endsWith(".deployment")) continue;
    const st = await fs.lstat(box.file(name)).catch(() => null);
    if (!st || now - st.mtimeMs < keepMs) continue;
    await fs.rm(box.file(name), { force: true, recursive: true });
    removed += 1;
  }
  return removed;
}
