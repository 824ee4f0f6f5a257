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

export async function writeImageWait(spool: Spool, stack: string, wait: ImageWait | null): Promise<void> {
  await writeStateNote(spool, "images", stack, ImageWaitSchema, wait);
}

/** Every job waiting for images now; a file that is not valid is left out. */
export const readImageWaits = (spool: Spool): Promise<ImageWait[]> => readStateNotes(spool, "images", ImageWaitSchema);

/**
 * `state/_<kind>.<stack>.json`, a note the watcher keeps of one stack for the readers of the spool
 * (the image wait, a deploy's progress): written whole through a temp file (validated by `schema`),
 * or removed with null.
 */
export async function writeStateNote<T>(spool: Spool, kind: string, stack: string, schema: z.ZodType<T>, value: T | null): Promise<void> {
  const file = spool.file("state", `_${kind}.${stack}.json`);
  if (value === null) {
    await fs.unlink(file).catch(() => undefined);
    return;
  }
  await replaceWith(await writeTemp(spool, `${kind}-${stack}`, `${JSON.stringify(schema.parse(value))}\n`), file);
}

/** Every `state/_<kind>.*.json` note, by file name; a file that is unreadable or not valid is left out. */
export async function readStateNotes<T>(spool: Spool, kind: string, schema: z.ZodType<T>): Promise<T[]> {
  const pattern = new RegExp(`^_${kind}\\..+\\.json$`);
  const names = (await fs.readdir(spool.dir("state")).catch(() => [])).filter((n) => pattern.test(n)).sort();
  const out: T[] = [];
  for (const n of names) {
    const text = await readBounded(spool.file("state", n), 64 * 1024).catch(() => null);
    if (text === null || isUnreadable(text)) continue;
    try {
      out.push(schema.parse(JSON.parse(text)));
    } catch {
      // not one of ours: not shown
    }
  }
  return out;
}

/**
 * `state/_reconcile.<stack>.json`: what the reconcile loop knows of a stack between its passes and
 * across restarts: the commits it queued a job for (each once), the drift episode under way (since
 * when, which services, whether it was told), services running below desired, and self-heal's count.
 * Written by the watcher only (state/ is not the API's); read by `swarmhook jobs`, doctor and the history page.
 */
export const ReconcileStateSchema = z.object({
  stack: z.string(),
  checkedAt: isoTime,
  /** Commits the loop queued a job for, oldest first (at most 50): never queued again by the loop. */
  queued: z.array(z.object({ sha: z.string().regex(COMMIT_SHA), jobId: z.string(), at: isoTime })).max(50),
  drift: z
    .object({
      since: isoTime,
      /** The record whose release the running services were compared with. */
      record: z.string().optional(),
      summary: z.string().max(4000),
      services: z.array(z.object({ service: z.string(), change: z.string(), fields: z.array(z.string()) })).max(200),
    })
    .nullable(),
  /** Services below desired: counted from the first pass that saw it; reported after two passes. */
  degraded: z
    .object({
      since: isoTime,
      passes: z.number().int().min(1),
      reported: z.boolean(),
      services: z.array(z.object({ service: z.string(), running: z.number().int(), desired: z.number().int() })).max(200),
    })
    .nullable(),
  /** SELF_HEAL: heals since the deploy `after` (a job id), and whether healing stopped (three heals the drift survived). */
  heal: z.object({ after: z.string(), count: z.number().int().min(0), stopped: z.boolean() }).nullable(),
});
export type ReconcileState = z.infer<typeof ReconcileStateSchema>;
const reconcileName = (stack: string) => `_reconcile.${stack}.json`;

export async function writeReconcileState(spool: Spool, s: ReconcileState): Promise<void> {
  const data = `${JSON.stringify(ReconcileStateSchema.parse(s))}\n`;
  await replaceWith(await writeTemp(spool, `reconcile-${s.stack}`, data), spool.file("state", reconcileName(s.stack)));
}

/** The reconcile state of one stack, or null when there is none or it is not valid (the loop starts it afresh). */
export async function readReconcileState(spool: Spool, stack: string): Promise<ReconcileState | null> {
  const text = await readBounded(spool.file("state", reconcileName(stack)), MAX_STATE_BYTES).catch(() => null);
  if (text === null || isUnreadable(text)) return null;
  try {
    return ReconcileStateSchema.parse(JSON.parse(text));
  } catch {
    return null;
  }
}

/** Every stack's reconcile state, by stack name; what is not valid is left out. */
export async function readReconcileStates(spool: Spool): Promise<ReconcileState[]> {
  const names = (await fs.readdir(spool.dir("state")).catch(() => [])).filter((n) => /^_reconcile\..+\.json$/.test(n)).sort();
  const out: ReconcileState[] = [];
  for (const n of names) {
    const s = await readReconcileState(spool, n.slice("_reconcile.".length, -".json".length));
    if (s) out.push(s);
  }
  return out;
}
