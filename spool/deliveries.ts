import { constants, promises as fs } from "node:fs";
import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { FILE_MODE, replaceWith, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import { OUTCOMES, type Outcome } from "./record.ts";

/**
 * `ids/<delivery-id>`: one marker per delivery, so a redelivery is recognised by one lookup, never by
 * reading history (which may hold 100,000 records). An empty marker means a job under that id is
 * pending or running; the agent replaces it with the outcome when the job finishes.
 */
export const DeliveryMarkSchema = z.strictObject({ outcome: z.enum(OUTCOMES), finished: isoTime, record: z.string() });
export type DeliveryMark = z.infer<typeof DeliveryMarkSchema>;

/** Outcomes after which a redelivery is a new attempt: GitHub's "Redeliver" is how operators retry. */
export const RETRYABLE: ReadonlySet<Outcome> = new Set(["failed", "rolled_back", "invalid"]);

/** A pending marker with no job in new/ or work/ for this long belongs to a writer that died between the two. */
export const ABANDONED_MARK_MS = 60_000;

export type Reservation = { status: "reserved" } | { status: "pending" } | { status: "handled"; outcome: Outcome };

const MAX_MARK_BYTES = 4096;

/**
 * Reserve a delivery id before its job is written: create `ids/<id>` exclusively. When it exists,
 * the id is pending (same job), handled (no new job) or retryable (a failed outcome: the marker is
 * taken over by an atomic rename, which one concurrent writer alone can win, and reserved again).
 */
export async function reserveDelivery(spool: Spool, id: string, now = Date.now()): Promise<Reservation> {
  const marker = spool.file("ids", id);
  for (let round = 0; round < 5; round++) {
    try {
      await (await fs.open(marker, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE)).close();
      return { status: "reserved" };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw toSpoolError(err, `reserving delivery ${id}`);
    }
    const seen = await readMark(spool, id, now);
    if (seen.status !== "retry") return seen;
    await takeOver(spool, id);
  }
  return { status: "pending" }; // another writer keeps winning: it holds the id
}

async function readMark(spool: Spool, id: string, now: number): Promise<Reservation | { status: "retry" }> {
  const text = await readBounded(spool.file("ids", id), MAX_MARK_BYTES);
  if (isUnreadable(text)) return { status: "retry" }; // not a marker of ours: replaced
  if (text === "") return (await isAbandoned(spool, id, now)) ? { status: "retry" } : { status: "pending" };
  let mark;
  try {
    mark = DeliveryMarkSchema.parse(JSON.parse(text));
  } catch {
    return { status: "retry" };
  }
  return RETRYABLE.has(mark.outcome) ? { status: "retry" } : { status: "handled", outcome: mark.outcome };
}

async function isAbandoned(spool: Spool, id: string, now: number): Promise<boolean> {
  for (const sub of ["new", "work"] as const) {
    if (await fs.lstat(spool.file(sub, `${id}.json`)).then(() => true, () => false)) return false;
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
