import { promises as fs } from "node:fs";
import { writeRecord } from "./claim.ts";
import { markDelivery } from "./deliveries.ts";
import { stamp, toSpoolError, type Spool } from "./layout.ts";
import { ResultRecordSchema, directoryFor, type ResultRecord } from "./record.ts";

/**
 * Finish a claimed job: write its result record into `done/` or `failed/` (by outcome) as
 * `<finished-stamp>-<jobId>.json`, mark the delivery with its outcome in `ids/`, then remove
 * `work/<jobId>.json`. The record is written first, so a crash in between leaves the job in `work/`,
 * to be deployed again: never lost. Calling it again with the same record (a retry) is safe.
 * @example
 * await finishJob(spool, record); // record.outcome === "success" → done/20261124T...-<id>.json
 */
export async function finishJob(spool: Spool, input: ResultRecord): Promise<string> {
  const record = ResultRecordSchema.parse(input);
  const dir = directoryFor(record.outcome);
  const name = `${stamp(new Date(record.timings.finished))}-${record.jobId}.json`;
  await writeRecord(spool, dir, name, record);
  await markDelivery(spool, record.jobId, { outcome: record.outcome, finished: record.timings.finished, record: `${dir}/${name}` });
  try {
    await fs.unlink(spool.file("work", `${record.jobId}.json`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toSpoolError(err, `removing work/${record.jobId}.json`);
  }
  return `${dir}/${name}`;
}
