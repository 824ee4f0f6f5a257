import { promises as fs } from "node:fs";
import { ensureSpool, publishNoClobber, syncDir, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import { JobSchema, jobFileName, type Job } from "./schema.ts";

export interface PublishResult {
  jobId: string;
  /** True when a job for this delivery id was already pending (in `new/` or `work/`): nothing was written. */
  duplicate: boolean;
}

/**
 * Durably publish a job into `new/`: validate, write and fsync in `tmp/`, then link into `new/`
 * (fails if the name exists), then fsync `new/`. A reader never sees a half-written job, and a
 * delivery id that is still pending stays one job. Throws SpoolError when the spool cannot be written.
 * @example
 * const { jobId, duplicate } = await publishJob(spool, job);
 */
export async function publishJob(spool: Spool, input: Job): Promise<PublishResult> {
  const job = JobSchema.parse(input); // only validated values become a file name
  const name = jobFileName(job);
  const jobId = job.deliveryId;
  try {
    if (await exists(spool.file("work", name))) return { jobId, duplicate: true };
    const data = `${JSON.stringify(job, null, 2)}\n`;
    // a root that came back (a remount) may lack its subdirectories: lay them out once and retry
    const tmp = await writeTemp(spool, jobId, data).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
      await ensureSpool(spool);
      return writeTemp(spool, jobId, data);
    });
    const published = await publishNoClobber(tmp, spool.file("new", name));
    if (published) await syncDir(spool.dir("new"));
    return { jobId, duplicate: !published };
  } catch (err) {
    throw toSpoolError(err, `publishing job ${jobId}`);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
