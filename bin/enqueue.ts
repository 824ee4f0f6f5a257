// `swarmhook enqueue`: put a manual deploy job into the spool, as the API would (for `just deploy-now`).
import { randomBytes } from "node:crypto";
import { JOB_VERSION, ensureSpool, openSpool, publishJob, type DeployJob } from "../spool/index.ts";

export const ENQUEUE_HELP = `swarmhook enqueue --sha SHA [--repository OWNER/NAME] [--branch main] [--spool DIR]
  Writes a manual deploy job for SHA into the spool (default: $SPOOL_DIR); the watcher picks it
  up like any push. Its commit time is now, so it is never stale: use it to redeploy or roll
  forward by hand, e.g. on kvm8: swarmhook enqueue --sha "$(git rev-parse origin/main)"
`;

export async function enqueue(o: { sha: string; repository: string; branch: string; spoolDir: string }): Promise<string> {
  const spool = openSpool(o.spoolDir, "api"); // a request, as the API would write it
  await ensureSpool(spool);
  const now = new Date();
  const job: DeployJob = {
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: `manual-${o.sha.slice(0, 12)}-${now.getTime()}-${randomBytes(3).toString("hex")}`,
    event: "manual",
    repository: o.repository,
    ref: `refs/heads/${o.branch}`,
    sha: o.sha,
    committedAt: now.toISOString(),
    sender: process.env.SUDO_USER ?? process.env.USER ?? "operator",
    receivedAt: now.toISOString(),
  };
  const r = await publishJob(spool, job);
  return r.jobId;
}
