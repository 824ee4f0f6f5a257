import { promises as fs } from "node:fs";
import { deliveryFinished, releaseDelivery, reserveDelivery } from "./deliveries.ts";
import { ensureSpool, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import type { Outcome } from "./record.ts";
import { JobSchema, jobFileName, type SpoolJob } from "./schema.ts";

export type PublishResult =
  | { jobId: string; status: "queued" }
  /** A job for this delivery id is pending or running: nothing was written. */
  | { jobId: string; status: "duplicate" }
  /** This delivery already ended with an outcome that a redelivery does not repeat (success, superseded, stale). */
  | { jobId: string; status: "handled"; outcome: Outcome };

/**
 * Durably publish a job into `new/`, once per delivery: write and fsync the job in `tmp/`, reserve
 * the id by linking it into `ids/` (fails if the name exists: a pending id is a duplicate, a handled
 * one is not queued again, a failed one is a new attempt), link it into `new/`, then fsync `new/`
 * (one fsync shared by concurrent publishes: group commit). Resolves only once the job survives a
 * power cut; the marker needs no fsync of its own (a lost marker is found again by the link into
 * `new/`, which fails while the job is pending). Throws SpoolError when the spool cannot be written.
 * @example
 * const r = await publishJob(spool, job); // r.status: "queued" | "duplicate" | "handled"
 */
export async function publishJob(spool: Spool, input: SpoolJob, now = Date.now()): Promise<PublishResult> {
  const job = JobSchema.parse(input); // only validated values become a file name
  const jobId = job.deliveryId;
  try {
    if (job.kind === "deploy" && (await deliveryFinished(spool, jobId))) job.redelivery = true;
    const data = `${JSON.stringify(job, null, 2)}\n`;
    // a root that came back (a remount) may lack its subdirectories: lay them out once and retry
    const tmp = await writeTemp(spool, jobId, data).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
      await ensureSpool(spool);
      return writeTemp(spool, jobId, data);
    });
    let result: PublishResult;
    try {
      result = await reserveAndLink(spool, job, tmp, now);
    } finally {
      await fs.unlink(tmp).catch(() => undefined);
    }
    if (result.status === "queued") await spool.sync("new");
    return result;
  } catch (err) {
    throw toSpoolError(err, `publishing job ${jobId}`);
  }
}

async function reserveAndLink(spool: Spool, job: SpoolJob, tmp: string, now: number): Promise<PublishResult> {
  const jobId = job.deliveryId;
  const reservation = await reserveDelivery(spool, jobId, tmp, now);
  if (reservation.status === "pending") return { jobId, status: "duplicate" };
  if (reservation.status === "handled") return { jobId, status: "handled", outcome: reservation.outcome };
  try {
    await fs.link(tmp, spool.file("new", jobFileName(job)));
  } catch (err) {
    // EEXIST: a job of this id sits in new/ without a marker (written before ids/ existed): the same job
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return { jobId, status: "duplicate" };
    await releaseDelivery(spool, jobId);
    throw err;
  }
  return { jobId, status: "queued" };
}
