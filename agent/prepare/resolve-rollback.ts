import { promises as fs } from "node:fs";
import { readRecord, type RollbackJob, type RollbackRequest, type Spool } from "../../spool/index.ts";

/**
 * Turn a rollback request into the rollback to deploy, from the watcher's own record only: the
 * record it names must be a regular file in done/ written by this watcher's user, the successful
 * deploy of the same stack, with a release. The commit, repository, ref and images all come from
 * that record; nothing of them from the request, which anyone who can write new/ could have made.
 * @example
 * const r = await resolveRollback(spool, request);
 * if ("reason" in r) quarantine(...); else deploy(r.job);
 */
export async function resolveRollback(
  spool: Spool,
  req: RollbackRequest,
  uid: number | undefined = process.getuid?.(),
): Promise<{ job: RollbackJob } | { reason: string }> {
  const name = req.fromRecord.slice("done/".length);
  const st = await fs.lstat(spool.file("done", name)).catch(() => null);
  if (!st) return { reason: `${req.fromRecord} is not among the watcher's records` };
  if (!st.isFile()) return { reason: `${req.fromRecord} is not a regular file` };
  if (uid !== undefined && st.uid !== uid) return { reason: `${req.fromRecord} was not written by the watcher (owner uid ${st.uid})` };
  const { record, problem } = await readRecord(spool, req.fromRecord);
  if (!record) return { reason: `${req.fromRecord} is not a readable record (${problem ?? "unknown"})` };
  if (record.outcome !== "success") return { reason: `${req.fromRecord} records a deploy that ended ${record.outcome}, not a success` };
  if (record.stack !== req.stack) return { reason: `${req.fromRecord} is a record of stack ${record.stack ?? "none"}, not ${req.stack}` };
  if (!record.job || !record.release) return { reason: `${req.fromRecord} holds no release (recorded before releases were)` };
  const { repository, ref, sha } = record.job;
  return { job: { ...req, repository, ref, sha, release: record.release } };
}
