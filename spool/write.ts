import { releaseDelivery, reserveDelivery } from "./deliveries.ts";
import { ensureSpool, publishNoClobber, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import type { Outcome } from "./record.ts";
import { JobSchema, jobFileName, type Job } from "./schema.ts";

export type PublishResult =
  | { jobId: string; status: "queued" }
  /** A job for this delivery id is pending or running: nothing was written. */
  | { jobId: string; status: "duplicate" }
  /** This delivery already ended with an outcome that a redelivery does not repeat (success, superseded, stale). */
  | { jobId: string; status: "handled"; outcome: Outcome };

/**
 * Durably publish a job into `new/`, once per delivery: reserve the id in `ids/` (exclusive create;
 * a pending id is a duplicate, a handled one is not queued again, a failed one is a new attempt),
 * write and fsync the job in `tmp/`, link it into `new/` (fails if the name exists), then fsync
 * `new/` and `ids/` (shared with concurrent publishes: group commit). Resolves only once the job
 * survives a power cut. Throws SpoolError when the spool cannot be written.
 * @example
 * const r = await publishJob(spool, job); // r.status: "queued" | "duplicate" | "handled"
 */
export async function publishJob(spool: Spool, input: Job, now = Date.now()): Promise<PublishResult> {
  const job = JobSchema.parse(input); // only validated values become a file name
  const jobId = job.deliveryId;
  try {
    const reservation = await reserveDelivery(spool, jobId, now).catch(async (err: unknown) => {
      // a root that came back (a remount) may lack its subdirectories: lay them out once and retry
      await ensureSpool(spool);
      return reserveDelivery(spool, jobId, now).catch(() => Promise.reject(err));
    });
    if (reservation.status === "pending") return { jobId, status: "duplicate" };
    if (reservation.status === "handled") return { jobId, status: "handled", outcome: reservation.outcome };
    let published = false;
    try {
      const tmp = await writeTemp(spool, jobId, `${JSON.stringify(job, null, 2)}\n`);
      published = await publishNoClobber(tmp, spool.file("new", jobFileName(job)));
    } catch (err) {
      await releaseDelivery(spool, jobId);
      throw err;
    }
    await Promise.all([spool.sync("new"), spool.sync("ids")]);
    return { jobId, status: published ? "queued" : "duplicate" };
  } catch (err) {
    throw toSpoolError(err, `publishing job ${jobId}`);
  }
}
