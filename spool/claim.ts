import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import { publishNoClobber, stamp, syncDir, toSpoolError, writeTemp, type Spool, type Subdir } from "./layout.ts";
import type { ResultRecord } from "./record.ts";
import { JobSchema, describeIssues, jobIdFromFileName, type Job } from "./schema.ts";

/** A job file larger than this is not one of ours. */
export const MAX_JOB_BYTES = 64 * 1024;

export type ClaimResult =
  | { status: "claimed"; jobId: string; job: Job; claimedAt: Date }
  | { status: "quarantined"; name: string; reason: string; record: string }
  | { status: "lost" };

/** Names waiting in `new/`, oldest name first. Only `new/` is read: history may hold 100,000 records. */
export async function listPending(spool: Spool): Promise<string[]> {
  try {
    return (await fs.readdir(spool.dir("new"))).sort();
  } catch (err) {
    throw toSpoolError(err, "listing new/");
  }
}

/** Names left in `work/` by a run that died; each is to be deployed again, never dropped. */
export async function listInterrupted(spool: Spool): Promise<string[]> {
  try {
    return (await fs.readdir(spool.dir("work"))).sort();
  } catch (err) {
    throw toSpoolError(err, "listing work/");
  }
}

/**
 * Claim `new/<name>` by renaming it into `work/` (one winner among concurrent claimers), then parse it
 * against the strict schema. A file that is not a valid job is quarantined into `failed/` with the
 * reason and never handed to the caller. `lost` means another claimer won.
 * @example
 * const r = await claimJob(spool, "72d3162e-cc78-11e3-81ab-4c9367dc0958.json");
 * if (r.status === "claimed") deploy(r.job);
 */
export async function claimJob(spool: Spool, name: string, now = new Date()): Promise<ClaimResult> {
  const jobId = jobIdFromFileName(name);
  if (jobId === null) return quarantine(spool, "new", name, "file name is not <delivery-id>.json", now);
  try {
    await fs.rename(spool.file("new", name), spool.file("work", name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { status: "lost" };
    throw toSpoolError(err, `claiming ${name}`);
  }
  return readClaimed(spool, name, jobId, now);
}

/** Parse a job already in `work/` (a claim of ours, or one a dead run left behind). */
export async function readClaimed(spool: Spool, name: string, jobId: string, now = new Date()): Promise<ClaimResult> {
  const raw = await readBounded(spool.file("work", name));
  if (typeof raw !== "string") return quarantine(spool, "work", name, raw.reason, now);
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    return quarantine(spool, "work", name, `not JSON: ${(err as Error).message}`, now);
  }
  const parsed = JobSchema.safeParse(data);
  if (!parsed.success) return quarantine(spool, "work", name, `schema: ${describeIssues(parsed.error)}`, now);
  if (parsed.data.deliveryId !== jobId) {
    return quarantine(spool, "work", name, `file name ${name} does not match deliveryId`, now);
  }
  return { status: "claimed", jobId, job: parsed.data, claimedAt: now };
}

async function readBounded(file: string): Promise<string | { reason: string }> {
  let handle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const st = await handle.stat();
    if (!st.isFile()) return { reason: "not a regular file" };
    if (st.size > MAX_JOB_BYTES) return { reason: `file too large (${st.size} bytes > ${MAX_JOB_BYTES})` };
    const buf = Buffer.alloc(MAX_JOB_BYTES + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_JOB_BYTES) return { reason: `file too large (> ${MAX_JOB_BYTES} bytes)` };
    return new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, bytesRead));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") return { reason: "a symbolic link, not a job file" };
    if (err instanceof TypeError) return { reason: "not UTF-8 text" };
    throw toSpoolError(err, `reading ${file}`);
  } finally {
    await handle?.close();
  }
}

/** Keep a name readable in history but free of anything a shell or a path could take for syntax. */
function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_").slice(0, 100) || "_";
}

/**
 * Move a bad file into `failed/<stamp>-<name>.raw` (its bytes kept as they were) and write an
 * `invalid` record beside it with the reason. Nothing is lost and nothing is executed.
 */
export async function quarantine(
  spool: Spool,
  from: Subdir,
  name: string,
  reason: string,
  now = new Date(),
): Promise<ClaimResult> {
  const base = `${stamp(now)}-${safeName(name)}-${randomBytes(3).toString("hex")}`;
  const rawName = `${base}.raw`;
  try {
    await fs.rename(spool.file(from, name), spool.file("failed", rawName));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { status: "lost" };
    throw toSpoolError(err, `quarantining ${name}`);
  }
  const record: ResultRecord = {
    outcome: "invalid",
    reason,
    jobId: safeName(name),
    job: null,
    stack: null,
    timings: { received: null, claimed: now.toISOString(), started: null, finished: now.toISOString() },
    attempts: [],
    services: [],
    warnings: [],
    quarantinedAs: rawName,
  };
  const recordName = `${base}.json`;
  await writeRecord(spool, "failed", recordName, record);
  return { status: "quarantined", name, reason, record: recordName };
}

/** Atomically add a record file to a history directory. */
export async function writeRecord(spool: Spool, dir: "done" | "failed", name: string, record: ResultRecord): Promise<void> {
  try {
    const tmp = await writeTemp(spool, name, `${JSON.stringify(record, null, 2)}\n`);
    if (!(await publishNoClobber(tmp, spool.file(dir, name)))) {
      throw new Error(`record ${dir}/${name} already exists`);
    }
    await syncDir(spool.dir(dir));
  } catch (err) {
    throw toSpoolError(err, `recording ${dir}/${name}`);
  }
}
