import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { onEnd, type Ends } from "./cleanup.ts";
import { JobSchema, ensureSpool, openSpool, type DeployJob, type Spool, type SpoolJob } from "../../spool/index.ts";

export interface TempSpool {
  root: string;
  /** The watcher's STATE_DIR beside it (`<root>.state`: the outbox, git mirrors), never inside the spool. */
  stateDir: string;
  spool: Spool;
  cleanup(): Promise<void>;
}

/** A real spool in a fresh temp directory, laid out as the API and agent expect. */
export async function tempSpool(prefix = "swarmhook-spool-"): Promise<TempSpool> {
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  const spool = openSpool(root);
  await ensureSpool(spool);
  const stateDir = `${root}.state`;
  const cleanup = async () => {
    await rm(root, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
  };
  return { root, stateDir, spool, cleanup };
}

/** A temp spool removed when the test ends (after what was started on it). */
export async function useTempSpool(t: Ends, prefix?: string): Promise<TempSpool> {
  const s = await tempSpool(prefix);
  onEnd(t, () => s.cleanup());
  return s;
}

/** The job waiting in new/ under this delivery id, parsed against the schema. */
export async function readPendingJob(root: string, deliveryId: string): Promise<SpoolJob> {
  return JobSchema.parse(JSON.parse(await readFile(path.join(root, "new", `${deliveryId}.json`), "utf8")));
}

/** A pending deploy job (what the API and `send`/`enqueue` write); fails the test for any other kind. */
export async function readPendingDeploy(root: string, deliveryId: string): Promise<DeployJob> {
  const job = await readPendingJob(root, deliveryId);
  if (job.kind !== "deploy") throw new Error(`${deliveryId} is a ${job.kind} job, not a deploy`);
  return job;
}
