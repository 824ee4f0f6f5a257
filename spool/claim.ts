import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { describeIssues } from "../lib/zod.ts";
import { MAX_JOB_BYTES, markDelivery } from "./deliveries.ts";
import { appendIndex } from "./history.ts";
import { API_DIRS, listDir, publishNoClobber, stamp, toSpoolError, writeTemp, type Spool, type Subdir } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import type { ResultRecord } from "./record.ts";
import { JobSchema, jobIdFromFileName, unknownJobFormat, type SpoolJob } from "./schema.ts";

export type ClaimResult =
  | { status: "claimed"; jobId: string; job: SpoolJob; claimedAt: Date }
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
  // the file in new/ belongs to its writer (the API), who could change it later: work/ gets the
  // watcher's own copy of the bytes read here, and only those bytes are ever judged
  const raw = await readBounded(spool.file("new", name), MAX_JOB_BYTES).catch((err: { cause?: NodeJS.ErrnoException }) => {
    if (err.cause?.code === "ENOENT") return null; // another claimer took it
    throw err;
  });
  if (raw === null) return { status: "lost" };
  if (isUnreadable(raw)) return quarantine(spool, "new", name, raw.reason, now);
  const tmp = await writeTemp(spool, name, raw);
  try {
    for (;;) {
      try {
        await fs.link(tmp, spool.file("work", name));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw toSpoolError(err, `claiming ${name}`);
      }
      const held = await fs.lstat(spool.file("work", name)).catch(() => null);
      if (held?.isFile()) {
        await fs.unlink(spool.file("new", name)).catch(() => undefined);
        return { status: "duplicate" };
      }
      // something that is not a job sits in work/ under this name: move it aside, then claim
      if (held) await quarantine(spool, "work", name, "not a regular file (found in work/ while claiming)", now);
    }
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
  try {
    await fs.unlink(spool.file("new", name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      // another claimer took it first (it linked its own copy: ours is the same name, one of the two stays)
    } else throw toSpoolError(err, `claiming ${name}`);
  }
  return parseClaimed(spool, name, jobId, raw, now);
}

/** Parse a job already in `work/` (a claim of ours, or one a dead run left behind). */
export async function readClaimed(spool: Spool, name: string, now = new Date()): Promise<ClaimResult> {
  const jobId = jobIdFromFileName(name);
  if (jobId === null) return quarantine(spool, "work", name, "file name is not <delivery-id>.json", now);
  const raw = await readBounded(spool.file("work", name), MAX_JOB_BYTES);
  if (isUnreadable(raw)) return quarantine(spool, "work", name, raw.reason, now);
  return parseClaimed(spool, name, jobId, raw, now);
}

/** Judge the bytes of a claimed job against the strict schema; what is not a job of ours is quarantined. */
async function parseClaimed(spool: Spool, name: string, jobId: string, raw: string, now: Date): Promise<ClaimResult> {
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
  let kept: Kept = { raw: true };
  try {
    if ((API_DIRS as readonly string[]).includes(from)) kept = await keepCopy(spool, spool.file(from, name), spool.file("failed", rawName));
    else await fs.rename(spool.file(from, name), spool.file("failed", rawName));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { status: "lost" };
    throw toSpoolError(err, `quarantining ${from}/${name}`);
  }
  const said = kept.note ? `${reason} (${kept.note})` : reason;
  const record: ResultRecord = {
    outcome: "invalid",
    reason: said,
    jobId: safeName(name),
    job: null,
    stack: null,
    timings: { received: null, claimed: now.toISOString(), started: null, finished: now.toISOString() },
    attempts: [],
    services: [],
    warnings: [],
    ...(kept.raw ? { quarantinedAs: rawName } : {}),
  };
  const recordName = `${base}.json`;
  await writeRecord(spool, "failed", recordName, record);
  const jobId = from === "new" || from === "work" ? jobIdFromFileName(name) : null;
  if (jobId !== null) await markDelivery(spool, jobId, { outcome: "invalid", finished: now.toISOString(), record: `failed/${recordName}` });
  return { status: "quarantined", name: `${from}/${name}`, reason: said, record: recordName };
}

const MAX_KEPT_BYTES = 1024 * 1024;

/**
 * Quarantine an entry of a directory the API writes: a file it owns could still be changed once
 * moved into failed/, so failed/ gets the watcher's own copy of its bytes (at most 1 MiB) and the
 * entry is removed. What is not a regular file is removed, never followed; what was kept is said.
 */
type Kept = { raw: boolean; note?: string };

async function keepCopy(spool: Spool, from: string, to: string): Promise<Kept> {
  const st = await fs.lstat(from);
  if (!st.isFile()) {
    await fs.rm(from, { recursive: true, force: true });
    return {
      raw: false,
      note: `removed: ${st.isSymbolicLink() ? "a symbolic link" : st.isDirectory() ? "a directory" : "a special file"}, nothing kept`,
    };
  }
  const handle = await fs.open(from, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  let bytes: Buffer;
  try {
    const buf = Buffer.alloc(Math.min(st.size, MAX_KEPT_BYTES));
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    bytes = buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const tmp = await writeTemp(spool, path.basename(to), bytes);
  await publishNoClobber(tmp, to);
  await fs.unlink(from);
  return st.size > MAX_KEPT_BYTES ? { raw: true, note: `first ${MAX_KEPT_BYTES} of ${st.size} bytes kept` } : { raw: true };
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
