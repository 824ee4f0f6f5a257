import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { COMMIT_SHA, makeSharedDir, writeTemp, type Spool } from "../spool/index.ts";

/** What was last deployed to a stack, so a late, older delivery is recorded stale, never deployed. */
export const DeployedSchema = z.object({
  stack: z.string(),
  sha: z.string().regex(COMMIT_SHA),
  committedAt: z.iso.datetime({ offset: true }),
  jobId: z.string(),
  finishedAt: z.iso.datetime({ offset: true }),
});
export type Deployed = z.infer<typeof DeployedSchema>;

const stateFile = (spool: Spool, stack: string) => path.join(spool.root, "state", `${stack}.json`);

/** The last successful deploy of `stack`, or null when there is none (or the file is unreadable: said in `problem`). */
export async function readDeployed(spool: Spool, stack: string): Promise<{ deployed: Deployed | null; problem?: string }> {
  let text: string;
  try {
    text = await fs.readFile(stateFile(spool, stack), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { deployed: null };
    throw err;
  }
  const parsed = DeployedSchema.safeParse((() => { try { return JSON.parse(text); } catch { return null; } })());
  return parsed.success ? { deployed: parsed.data } : { deployed: null, problem: `state/${stack}.json is not valid; ignoring it` };
}

/** Replace the state file atomically (temp file in tmp/, then rename over the old one). */
export async function writeDeployed(spool: Spool, d: Deployed): Promise<void> {
  await makeSharedDir(path.join(spool.root, "state"));
  const tmp = await writeTemp(spool, `state-${d.stack}`, `${JSON.stringify(DeployedSchema.parse(d), null, 2)}\n`);
  await fs.rename(tmp, stateFile(spool, d.stack));
}

/** Order by commit time, then receipt, then id: the last is the newest. */
export function newestFirst<T extends { committedAt: string; receivedAt: string; deliveryId: string }>(a: T, b: T): number {
  return Date.parse(b.committedAt) - Date.parse(a.committedAt) || Date.parse(b.receivedAt) - Date.parse(a.receivedAt) || b.deliveryId.localeCompare(a.deliveryId);
}
