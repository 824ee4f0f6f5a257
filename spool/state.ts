import { promises as fs } from "node:fs";
import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { quarantine } from "./claim.ts";
import { replaceWith, writeTemp, type Spool } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import { COMMIT_SHA, ReleaseSchema } from "./schema.ts";

/** How many ref moves a stack's state remembers: enough for any late delivery GitHub still sends. */
export const MAX_MOVES = 500;
const MAX_STATE_BYTES = 256 * 1024;

/** One move of a branch as GitHub's push event reports it: `before` → `after`. */
export const MoveSchema = z.object({ before: z.string().regex(COMMIT_SHA), after: z.string().regex(COMMIT_SHA) });
export type Move = z.infer<typeof MoveSchema>;

/**
 * `state/<stack>.json`: what a stack last deployed and the branch moves seen so far, so a late
 * delivery of a commit the branch has already moved past is recorded stale, never deployed.
 */
export const DeployedSchema = z.object({
  stack: z.string(),
  sha: z.string().regex(COMMIT_SHA),
  jobId: z.string(),
  finishedAt: isoTime,
  moves: z.array(MoveSchema).max(MAX_MOVES).default([]),
  /** What that deploy runs (the record's release and path): what ON_FAILURE=rollback goes back to. */
  release: ReleaseSchema.optional(),
  record: z.string().optional(),
});
export type Deployed = z.infer<typeof DeployedSchema>;

const stateName = (stack: string) => `${stack}.json`;

/**
 * The last successful deploy of `stack`, or null when there is none. A state file that is not valid
 * is ignored (said in `problem`); one that is not a regular file (a FIFO, a link, a directory, a
 * device) is quarantined into `failed/` so it can neither block nor be followed.
 */
export async function readDeployed(spool: Spool, stack: string): Promise<{ deployed: Deployed | null; problem?: string }> {
  const name = stateName(stack);
  const text = await readBounded(spool.file("state", name), MAX_STATE_BYTES).catch((err: unknown) => {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === "ENOENT") return null;
    throw err;
  });
  if (text === null) return { deployed: null };
  if (isUnreadable(text)) {
    await quarantine(spool, "state", name, `state file: ${text.reason}`);
    return { deployed: null, problem: `state/${name} quarantined: ${text.reason}` };
  }
  let data: unknown = null;
  try {
    data = JSON.parse(text);
  } catch {
    // reported below
  }
  const parsed = DeployedSchema.safeParse(data);
  return parsed.success ? { deployed: parsed.data } : { deployed: null, problem: `state/${name} is not valid; ignoring it` };
}

/** Replace the state file atomically (temp file in tmp/, then rename over the old one). */
export async function writeDeployed(spool: Spool, d: Deployed): Promise<void> {
  const data = `${JSON.stringify(DeployedSchema.parse(d), null, 2)}\n`;
  await replaceWith(await writeTemp(spool, `state-${d.stack}`, data), spool.file("state", stateName(d.stack)));
}

/**
 * `state/_watcher.json`: why the watcher is not deploying right now (the Docker engine does not
 * answer, the node left the swarm), for `swarmhook jobs`. Absent while all is well. The leading
 * underscore keeps it apart from stack names, which start with a letter or digit.
 */
export const WatcherStatusSchema = z.object({ waitingSince: isoTime, checkedAt: isoTime, problem: z.string(), fix: z.string() });
export type WatcherStatus = z.infer<typeof WatcherStatusSchema>;
const WATCHER_STATUS = "_watcher.json";

export async function writeWatcherStatus(spool: Spool, status: WatcherStatus | null): Promise<void> {
  const file = spool.file("state", WATCHER_STATUS);
  if (status === null) {
    await fs.unlink(file).catch(() => undefined);
    return;
  }
  await replaceWith(await writeTemp(spool, "watcher-status", `${JSON.stringify(WatcherStatusSchema.parse(status))}\n`), file);
}

export async function readWatcherStatus(spool: Spool): Promise<WatcherStatus | null> {
  const text = await readBounded(spool.file("state", WATCHER_STATUS), 16 * 1024).catch(() => null);
  if (text === null || isUnreadable(text)) return null;
  try {
    return WatcherStatusSchema.parse(JSON.parse(text));
  } catch {
    return null;
  }
}

/**
 * `state/_images.<stack>.json`: the job of `stack` waiting for images its registry does not have yet
 * (IMAGE_WAIT_S), for `swarmhook jobs`. Written when the wait starts, removed when it ends.
 */
export const ImageWaitSchema = z.object({
  stack: z.string(),
  jobId: z.string(),
  sha: z.string().regex(COMMIT_SHA),
  images: z.array(z.string().max(512)).max(100),
  since: isoTime,
});
export type ImageWait = z.infer<typeof ImageWaitSchema>;
const imageWaitName = (stack: string) => `_images.${stack}.json`;

export async function writeImageWait(spool: Spool, stack: string, wait: ImageWait | null): Promise<void> {
  const file = spool.file("state", imageWaitName(stack));
  if (wait === null) {
    await fs.unlink(file).catch(() => undefined);
    return;
  }
  await replaceWith(await writeTemp(spool, `images-${stack}`, `${JSON.stringify(ImageWaitSchema.parse(wait))}\n`), file);
}

/** Every job waiting for images now; a file that is not valid is left out. */
export async function readImageWaits(spool: Spool): Promise<ImageWait[]> {
  const names = (await fs.readdir(spool.dir("state")).catch(() => [])).filter((n) => /^_images\..+\.json$/.test(n)).sort();
  const out: ImageWait[] = [];
  for (const n of names) {
    const text = await readBounded(spool.file("state", n), 64 * 1024).catch(() => null);
    if (text === null || isUnreadable(text)) continue;
    try {
      out.push(ImageWaitSchema.parse(JSON.parse(text)));
    } catch {
      // not one of ours: not shown
    }
  }
  return out;
}
