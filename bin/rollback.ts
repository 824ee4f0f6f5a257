// `swarmhook rollback`: queue a rollback job that redeploys a recorded release by its digests.
import {
  JOB_VERSION,
  ensureSpool,
  listRecords,
  openSpool,
  publishJob,
  readDeployed,
  rollbackJobId,
  shortSha,
  type HistoryEntry,
  type RollbackRequest,
  type Spool,
} from "../spool/index.ts";

export const ROLLBACK_HELP = `swarmhook rollback --stack NAME [--to SHA] [--spool DIR]
  Queues a rollback job: the watcher redeploys a recorded release of the stack by the image
  digests recorded then (tags move; digests do not), and verifies it like any deploy. Without
  --to: the last successful deploy of another commit than the one the stack runs now. With --to:
  the newest successful deploy of SHA (7 or more hex digits). Never stale; only a push received
  after it supersedes it. Exit 0 queued, 1 nothing to roll back to (no job written), 2 bad usage.
  e.g. on kvm8:  just rollback app   |   swarmhook rollback --stack app --to 3f2a9c1e07b4
`;

/** Nothing recorded to roll back to: said to the operator, and no job is written. */
export class NothingToRollBack extends Error {}

const PAGE = 200;

/** Successful records of `stack`, newest first, page by page through the history index. */
async function* successes(spool: Spool, stack: string): AsyncGenerator<HistoryEntry> {
  let before: string | undefined;
  for (;;) {
    const page = await listRecords(spool, { limit: PAGE, stack, outcome: "success", ...(before ? { before } : {}) });
    yield* page;
    if (page.length < PAGE) return;
    before = page.at(-1)?.path.split("/")[1];
  }
}

/** The record to go back to: see ROLLBACK_HELP. Throws NothingToRollBack with the reason. */
export async function findRelease(spool: Spool, stack: string, to?: string): Promise<{ entry: HistoryEntry; current: string | null }> {
  const { deployed } = await readDeployed(spool, stack);
  let current = deployed?.sha ?? null;
  let withoutRelease: HistoryEntry | undefined;
  for await (const e of successes(spool, stack)) {
    const sha = e.record?.job?.sha;
    if (!sha) continue;
    current ??= sha; // no state file: the newest success is what runs
    const wanted = to ? sha.startsWith(to) : sha !== current;
    if (!wanted) continue;
    if (e.record?.release) return { entry: e, current };
    withoutRelease ??= e;
  }
  const what = to ? `of ${to}` : `of another commit than the running ${current ? shortSha(current) : "one"}`;
  if (withoutRelease) {
    throw new NothingToRollBack(
      `the successful deploy ${what} (${withoutRelease.path}) was recorded before releases were: deploy it by tag with 'swarmhook enqueue --sha ${withoutRelease.record?.job?.sha}'`,
    );
  }
  throw new NothingToRollBack(`no successful deploy ${what} is recorded for stack ${stack}`);
}

/**
 * Queue the rollback; returns the job and what it goes back to.
 * @example
 * const { job } = await rollback({ spoolDir: "/srv/nfs/webhook_jobs", stack: "app" });
 */
export async function rollback(o: {
  spoolDir: string;
  stack: string;
  to?: string;
}): Promise<{ job: RollbackRequest; sha: string; from: string | null }> {
  const spool = openSpool(o.spoolDir, "api"); // a request, as the API would write it
  await ensureSpool(spool);
  const { entry, current } = await findRelease(spool, o.stack, o.to);
  const rec = entry.record;
  if (!rec?.job || !rec.release) throw new NothingToRollBack(`${entry.path} holds no release`);
  const now = new Date();
  // the job names the record; the watcher reads the commit and images from its own record again
  const job: RollbackRequest = {
    version: JOB_VERSION,
    kind: "rollback",
    deliveryId: rollbackJobId(rec.job.sha, now),
    stack: o.stack,
    fromRecord: entry.path,
    cause: "operator",
    sender: process.env.SUDO_USER ?? process.env.USER ?? "operator",
    receivedAt: now.toISOString(),
  };
  await publishJob(spool, job);
  return { job, sha: rec.job.sha, from: current };
}
