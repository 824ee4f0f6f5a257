import { promises as fs } from "node:fs";
import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { replaceWith, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import { isUnreadable, parseJson, readBounded } from "./read.ts";
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
export const RETRYABLE: ReadonlySet<Outcome> = new Set(["failed", "rolled_back", "invalid", "planned"]);

/** A pending marker with no job in new/ or work/ for this long belongs to a writer that died between the two. */
export const ABANDONED_MARK_MS = 60_000;

export type Reservation = { status: "reserved" } | { status: "pending" } | { status: "handled"; outcome: Outcome };

const MAX_MARK_BYTES = MAX_JOB_BYTES;

/**
 * Reserve a delivery id for the complete job file `jobFile` (in tmp/): link it as `ids/<id>`, which
 * fails when the name exists. Then the id is pending (same job), handled (no new job) or retryable (a
 * failed outcome: the marker is taken over by an atomic rename, which one concurrent writer alone can
 * win, and reserved again).
 */
export async function reserveDelivery(spool: Spool, id: string, jobFile: string, now = Date.now()): Promise<Reservation> {
  const marker = spool.file("ids", id);
  for (let round = 0; round < 5; round++) {
    try {
      await fs.link(jobFile, marker);
      return { status: "reserved" };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw toSpoolError(err, `reserving delivery ${id}`);
    }
    const seen = await readMark(spool, id, now);
    if (seen.status === "gone") continue; // a concurrent writer took the marker over between our link and our read
    if (seen.status !== "retry") return seen;
    await takeOver(spool, id);
  }
  return { status: "pending" }; // another writer keeps winning: it holds the id
}

async function readMark(spool: Spool, id: string, now: number): Promise<Reservation | { status: "retry" } | { status: "gone" }> {
  const text = await readBounded(spool.file("ids", id), MAX_MARK_BYTES).catch(async (err: unknown) => {
    // the marker alone vanished (ids/ is still there): moved aside by a writer taking it over
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
  if (mark.success) return RETRYABLE.has(mark.data.outcome) ? { status: "retry" } : { status: "handled", outcome: mark.data.outcome };
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

/** Move the marker out of the way; a concurrent writer that moved it first makes this a no-op (ENOENT). */
async function takeOver(spool: Spool, id: string): Promise<void> {
  const aside = spool.file("tmp", `${id}.taken-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    await fs.rename(spool.file("ids", id), aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw toSpoolError(err, `retrying delivery ${id}`);
  }
  await fs.rm(aside, { recursive: true, force: true });
}

/** Whether this delivery id already ended once (its marker holds an outcome): a label for the next attempt, never a decision. */
export async function deliveryFinished(spool: Spool, id: string): Promise<boolean> {
  const text = await readBounded(spool.file("ids", id), MAX_MARK_BYTES).catch((err: Error) => ({ reason: err.message }));
  return "value" in parseJson(text, DeliveryMarkSchema);
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
