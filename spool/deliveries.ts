import { promises as fs } from "node:fs";
import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { replaceWith, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import { OUTCOMES, type Outcome } from "./record.ts";
import { JobSchema } from "./schema.ts";

/** A job file larger than this is not one of ours. */
export const MAX_JOB_BYTES = 64 * 1024;

/**
 * `ids/<delivery-id>`: one marker per delivery, so a redelivery is recognised by one lookup, never by
 * reading history (which may hold 100,000 records). While the job is pending or running the marker is
 * a hard link to the job file itself (a link costs no new inode: publishing stays as fast as a bare
 * write); the agent replaces it with the outcome when the job finishes.
 */
export const DeliveryMarkSchema = z.strictObject({ outcome: z.enum(OUTCOMES), finished: isoTime, record: z.string() });
export type DeliveryMark = z.infer<typeof DeliveryMarkSchema>;

/** Outcomes after which a redelivery is a new attempt: GitHub's "Redeliver" is how operators retry. */
export const RETRYABLE: ReadonlySet<Outcome> = new Set(["failed", "rolled_back", "invalid", "planned", "blocked"]);

/** A pending marker with no job in new/ or work/ for this long belongs to a writer that died between the two. */
export const ABANDONED_MARK_MS = 60_000;

export type Reservation =
  | { status: "reserved" }
  | { status: "pending" }
  | { status: "handled"; outcome: Outcome }
  /** The id's marker holds a retryable outcome: reserve again with the job labelled a redelivery. */
  | { status: "retaken" };

const MAX_MARK_BYTES = MAX_JOB_BYTES;

/**
 * Reserve a delivery id for the complete job file `jobFile` (in tmp/): link it as `ids/<id>`, which
 * fails when the name exists. Then the id is pending (same job), handled (no new job) or retryable. A
 * retryable outcome's marker is answered `retaken` until the job is `labelled` a redelivery (the caller
 * rewrites it and comes back); then, like a marker that is not ours or was abandoned, it is replaced by
 * this job in one step (replaceMark), which one concurrent writer alone can win. A new delivery costs
 * one link.
 */
export async function reserveDelivery(spool: Spool, id: string, jobFile: string, now = Date.now(), labelled = false): Promise<Reservation> {
  const marker = spool.file("ids", id);
  for (let round = 0; round < 5; round++) {
    try {
      await fs.link(jobFile, marker);
      return { status: "reserved" };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw toSpoolError(err, `reserving delivery ${id}`);
    }
    const seen = await readMark(spool, id, now);
    if (seen.status === "gone") continue; // removed between our link and our read (pruned): link again
    if (seen.status === "finished" && !labelled) return { status: "retaken" };
    if (seen.status !== "retry" && seen.status !== "finished") return seen;
    return (await replaceMark(spool, id, jobFile, now)) ? { status: "reserved" } : { status: "pending" };
  }
  return { status: "pending" }; // another writer keeps winning: it holds the id
}

/**
 * Replace the marker by this job with no moment without one: link the job as `ids/<id>.next` (fails
 * if another writer is replacing it: false, that writer holds the id), then rename it over the marker.
 * A `.next` left by a writer that died is removed after ABANDONED_MARK_MS.
 */
async function replaceMark(spool: Spool, id: string, jobFile: string, now: number): Promise<boolean> {
  const next = spool.file("ids", `${id}.next`);
  const marker = spool.file("ids", id);
  try {
    if (!(await linkNext(jobFile, next, now))) return false;
    await fs.rename(next, marker).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "EISDIR" && err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
      await fs.rm(marker, { recursive: true, force: true }); // a directory planted there: ours to replace
      await fs.rename(next, marker);
    });
    return true;
  } catch (err) {
    // ENOENT: our .next was taken for abandoned and removed by a writer that now holds the id
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw toSpoolError(err, `retrying delivery ${id}`);
  }
}

async function linkNext(jobFile: string, next: string, now: number): Promise<boolean> {
  for (let round = 0; round < 3; round++) {
    try {
      await fs.link(jobFile, next);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const st = await fs.lstat(next).catch(() => null);
    if (st && now - st.mtimeMs <= ABANDONED_MARK_MS) return false; // another writer is replacing the marker
    // a stale one (its writer died) is removed; one renamed into place since our link is gone: link again
    if (st) await fs.rm(next, { recursive: true, force: true });
  }
  return false;
}

async function readMark(
  spool: Spool,
  id: string,
  now: number,
): Promise<Reservation | { status: "retry" } | { status: "finished" } | { status: "gone" }> {
  const text = await readBounded(spool.file("ids", id), MAX_MARK_BYTES).catch(async (err: unknown) => {
    // the marker alone vanished (ids/ is still there): pruned between our link and our read
    const missing = (err as { cause?: NodeJS.ErrnoException }).cause?.code === "ENOENT";
    if (missing && (await fs.stat(spool.dir("ids")).catch(() => null))) return null;
    throw err;
  });
  if (text === null) return { status: "gone" };
  if (isUnreadable(text)) return { status: "retry" }; // not a marker of ours: replaced
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { status: "retry" };
  }
  const mark = DeliveryMarkSchema.safeParse(data);
  if (mark.success) return RETRYABLE.has(mark.data.outcome) ? { status: "finished" } : { status: "handled", outcome: mark.data.outcome };
  if (!JobSchema.safeParse(data).success) return { status: "retry" };
  return (await isAbandoned(spool, id, now)) ? { status: "retry" } : { status: "pending" };
}

async function isAbandoned(spool: Spool, id: string, now: number): Promise<boolean> {
  for (const sub of ["new", "work"] as const) {
    if (
      await fs.lstat(spool.file(sub, `${id}.json`)).then(
        () => true,
        () => false,
      )
    )
      return false;
  }
  const st = await fs.lstat(spool.file("ids", id)).catch(() => null);
  return st !== null && now - st.mtimeMs > ABANDONED_MARK_MS;
}

/** Give back a reservation whose job was not written, so a redelivery is not answered "pending". */
export async function releaseDelivery(spool: Spool, id: string): Promise<void> {
  await fs.unlink(spool.file("ids", id)).catch(() => undefined);
}

/** Record how a delivery's job ended (agent side), replacing the pending marker in one step. */
export async function markDelivery(spool: Spool, id: string, mark: DeliveryMark): Promise<void> {
  try {
    const data = JSON.stringify(DeliveryMarkSchema.parse(mark));
    const marker = spool.file("ids", id);
    await replaceWith(await writeTemp(spool, `mark-${id}`, data), marker).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "EISDIR" && err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
      await fs.rm(marker, { recursive: true, force: true }); // something planted there: ours to replace
      await replaceWith(await writeTemp(spool, `mark-${id}`, data), marker);
    });
    await spool.sync("ids");
  } catch (err) {
    throw toSpoolError(err, `marking delivery ${id}`);
  }
}
