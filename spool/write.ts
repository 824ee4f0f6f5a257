import { promises as fs } from "node:fs";
import { releaseDelivery, reserveDelivery } from "./deliveries.ts";
import { ensureSpool, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import type { Outcome } from "./record.ts";
import { JobSchema, jobFileName, type SpoolJob } from "./schema.ts";

export type PublishResult =
  | { jobId: string; status: "queued" }
  /** A job for this delivery id is pending or running: nothing was written. */
  | { jobId: string; status: "duplicate" }
  /** This delivery already ended with an outcome that a redelivery does not repeat (success, superseded, stale). */
  | { jobId: string; status: "handled"; outcome: Outcome };

/** What one reservation gave: a result, or `retaken` (the id ended with a retryable outcome: publish again, labelled a redelivery). */
type Linked = PublishResult | { jobId: string; status: "retaken" };

/**
 * Durably publish a job into `new/`, once per delivery: write and fsync the job in `tmp/`, reserve
 * the id by linking it into `ids/` (fails if the name exists: a pending id is a duplicate, a handled
 * one is not queued again, a failed one is a new attempt, labelled a redelivery), link it into `new/`,
 * then fsync `new/` (one fsync shared by concurrent publishes: group commit). Resolves only once the
 * job survives a power cut; the marker needs no fsync of its own (a lost marker is found again by the
 * link into `new/`, which fails while the job is pending). Throws SpoolError when the spool cannot be
 * written. A new delivery costs one file write and three directory entries, nothing read.
 * @example
 * const r = await publishJob(spool, job); // r.status: "queued" | "duplicate" | "handled"
 */
export async function publishJob(spool: Spool, input: SpoolJob, now = Date.now()): Promise<PublishResult> {
  const job = JobSchema.parse(input); // only validated values become a file name
  try {
    let tmp = await writeJob(spool, job);
    let result: Linked;
    try {
      result = await reserveAndLink(spool, job, tmp, now);
      // the id ended once with a retryable outcome: this attempt is a new one, and a deploy says it is a
      // redelivery (a labelled job is never answered `retaken`: this runs once)
      while (result.status === "retaken") {
        if (job.kind === "deploy") {
          job.redelivery = true;
          const relabelled = await writeJob(spool, job);
          await fs.unlink(tmp).catch(() => undefined);
          tmp = relabelled;
        }
        result = await reserveAndLink(spool, job, tmp, now, true);
      }
    } finally {
      // the temp name goes while new/ is made durable: a crash between the two leaves it for cleanStaleTemp
      void fs.unlink(tmp).catch(() => undefined);
    }
    if (result.status === "queued") await spool.sync("new");
    return result;
  } catch (err) {
    throw toSpoolError(err, `publishing job ${job.deliveryId}`);
  }
}

/** The job in a fresh temp file, fsynced; a root that came back (a remount) without its subdirectories is laid out once. */
function writeJob(spool: Spool, job: SpoolJob): Promise<string> {
  const data = `${JSON.stringify(job, null, 2)}\n`;
  return writeTemp(spool, job.deliveryId, data).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
    await ensureSpool(spool);
    return writeTemp(spool, job.deliveryId, data);
  });
}

async function reserveAndLink(spool: Spool, job: SpoolJob, tmp: string, now: number, labelled = false): Promise<Linked> {
  const jobId = job.deliveryId;
  const reservation = await reserveDelivery(spool, jobId, tmp, now, labelled);
  if (reservation.status === "retaken") return { jobId, status: "retaken" };
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
