import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { describeIssues } from "../lib/zod.ts";
import { MAX_JOB_BYTES, markDelivery } from "./deliveries.ts";
import { appendIndex } from "./history.ts";
import { listDir, publishNoClobber, stamp, toSpoolError, writeTemp, type Spool, type Subdir } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import type { ResultRecord } from "./record.ts";
import { JobSchema, jobIdFromFileName, unknownJobFormat, type Job } from "./schema.ts";

export type ClaimResult =
  | { status: "claimed"; jobId: string; job: Job; claimedAt: Date }
  | { status: "quarantined"; name: string; reason: string; record: string }
  /** Another claimer won: nothing to do. */
  | { status: "lost" }
  /** The delivery is already claimed in work/ (the same job): the copy in new/ was dropped. */
  | { status: "duplicate" };

/** Names waiting in `new/`, in name order. Only `new/` is read: history may hold 100,000 records. */
export async function listPending(spool: Spool): Promise<string[]> {
  return (await listDir(spool, "new")).sort();
}

/**
 * Claim `new/<name>` into `work/` without ever replacing anything: link(2) into `work/` (fails when
 * the name is taken, and only one of concurrent claimers can create it), then unlink from `new/`.
 * The file is then parsed against the strict schema; what is not a valid job is quarantined into
 * `failed/` with the reason and never handed to the caller. A name already in `work/` is the same
 * delivery, already claimed: the copy in `new/` is dropped (`duplicate`).
 * @example
 * const r = await claimJob(spool, "72d3162e-cc78-11e3-81ab-4c9367dc0958.json");
 * if (r.status === "claimed") deploy(r.job);
 */
export async function claimJob(spool: Spool, name: string, now = new Date()): Promise<ClaimResult> {
  const jobId = jobIdFromFileName(name);
  if (jobId === null) return quarantine(spool, "new", name, "file name is not <delivery-id>.json", now);
  const st = await fs.lstat(spool.file("new", name)).catch(() => null);
  if (st === null) return { status: "lost" };
  if (!st.isFile())
    return quarantine(spool, "new", name, st.isSymbolicLink() ? "a symbolic link, not a job file" : "not a regular file", now);
  for (;;) {
    try {
      await fs.link(spool.file("new", name), spool.file("work", name));
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return { status: "lost" };
      if (code !== "EEXIST") throw toSpoolError(err, `claiming ${name}`);
    }
    const held = await fs.lstat(spool.file("work", name)).catch(() => null);
    if (held?.isFile()) {
      await fs.unlink(spool.file("new", name)).catch(() => undefined);
      return { status: "duplicate" };
    }
    // something that is not a job sits in work/ under this name: move it aside, then claim
    if (held) await quarantine(spool, "work", name, "not a regular file (found in work/ while claiming)", now);
  }
  await fs.unlink(spool.file("new", name)).catch(() => undefined);
  return readClaimed(spool, name, now);
}

/** Parse a job already in `work/` (a claim of ours, or one a dead run left behind). */
export async function readClaimed(spool: Spool, name: string, now = new Date()): Promise<ClaimResult> {
  const jobId = jobIdFromFileName(name);
  if (jobId === null) return quarantine(spool, "work", name, "file name is not <delivery-id>.json", now);
  const raw = await readBounded(spool.file("work", name), MAX_JOB_BYTES);
  if (isUnreadable(raw)) return quarantine(spool, "work", name, raw.reason, now);
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    return quarantine(spool, "work", name, `not JSON: ${(err as Error).message}`, now);
  }
  const unknown = unknownJobFormat(data);
  if (unknown) return quarantine(spool, "work", name, unknown, now);
  const parsed = JobSchema.safeParse(data);
  if (!parsed.success) return quarantine(spool, "work", name, `schema: ${describeIssues(parsed.error)}`, now);
  if (parsed.data.deliveryId !== jobId) {
    return quarantine(spool, "work", name, `file name ${name} does not match deliveryId`, now);
  }
  return { status: "claimed", jobId, job: parsed.data, claimedAt: now };
}

/**
 * Everything a dead run left in `work/`, parsed again (each is to be deployed again, never dropped;
 * what does not parse is quarantined). Run once at start, before the first claim.
 */
export async function recoverInterrupted(spool: Spool, now = new Date()): Promise<ClaimResult[]> {
  const names = (await listDir(spool, "work")).sort();
  const out: ClaimResult[] = [];
  for (const name of names) out.push(await readClaimed(spool, name, now));
  return out;
}

/** Keep a name readable in history but free of anything a shell or a path could take for syntax. */
function safeName(name: string): string {
  return (
    name
      .replace(/[^A-Za-z0-9._-]/g, "_")
      .replace(/^\.+/, "_")
      .slice(0, 100) || "_"
  );
}

/**
 * Move a bad entry into `failed/<stamp>-<name>-<rand>.raw` (a file keeps its bytes as they were; a
 * directory, FIFO or link is moved as it is, never followed) and write an `invalid` record beside
 * it with the reason. Nothing is lost and nothing is executed.
 */
export async function quarantine(spool: Spool, from: Subdir, name: string, reason: string, now = new Date()): Promise<ClaimResult> {
  const base = `${stamp(now)}-${safeName(name)}-${randomBytes(3).toString("hex")}`;
  const rawName = `${base}.raw`;
  try {
    await fs.rename(spool.file(from, name), spool.file("failed", rawName));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { status: "lost" };
    throw toSpoolError(err, `quarantining ${from}/${name}`);
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
  const jobId = from === "new" || from === "work" ? jobIdFromFileName(name) : null;
  if (jobId !== null) await markDelivery(spool, jobId, { outcome: "invalid", finished: now.toISOString(), record: `failed/${recordName}` });
  return { status: "quarantined", name: `${from}/${name}`, reason, record: recordName };
}

/** Atomically add a record file to a history directory; false when a record of that name is already there (a retry). */
export async function writeRecord(spool: Spool, dir: "done" | "failed", name: string, record: ResultRecord): Promise<boolean> {
  try {
    const tmp = await writeTemp(spool, name, `${JSON.stringify(record, null, 2)}\n`);
    const written = await publishNoClobber(tmp, spool.file(dir, name));
    await spool.sync(dir);
    // the index is derived: a failed append is put back by the next rebuild (start, hourly)
    if (written) await appendIndex(spool, `${dir}/${name}`, record).catch(() => undefined);
    return written;
  } catch (err) {
    throw toSpoolError(err, `recording ${dir}/${name}`);
  }
}
