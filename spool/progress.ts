import { promises as fs } from "node:fs";
import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { replaceWith, writeTemp, type Spool } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import { COMMIT_SHA, STACK_NAME } from "./schema.ts";

/**
 * `state/_progress.<stack>.json`: the deploy running now for a stack, as the watcher last saw it:
 * its phase, and per service the tasks on the new version against desired and what they are doing.
 * Written by the watcher only (state/ is not the API's), removed when the deploy ends; read by
 * `swarmhook follow`, `/api/deployments/<id>` and the deployment page.
 */
export const ProgressSchema = z.strictObject({
  stack: z.string().regex(STACK_NAME),
  jobId: z.string().min(1).max(200),
  sha: z.string().regex(COMMIT_SHA),
  /** waiting for images → deploying (docker stack deploy) → verifying (converging) → checking health. */
  phase: z.enum(["waiting for images", "deploying", "verifying", "checking health"]),
  startedAt: isoTime,
  updatedAt: isoTime,
  services: z
    .array(
      z.strictObject({
        /** The service's name in the stack file (`web`). */
        name: z.string().min(1).max(200),
        /** Running tasks on the version this deploy asks for. */
        updated: z.number().int().min(0),
        desired: z.number().int().min(0),
        /** pulling, starting, running, updating, rolling back, rolled back, paused */
        state: z.string().min(1).max(40),
      }),
    )
    .max(200),
});
export type Progress = z.infer<typeof ProgressSchema>;
const progressName = (stack: string) => `_progress.${stack}.json`;

/** Publish (or, with null, remove) the progress of `stack`'s running deploy. */
export async function writeProgress(spool: Spool, stack: string, p: Progress | null): Promise<void> {
  const file = spool.file("state", progressName(stack));
  if (p === null) {
    await fs.unlink(file).catch(() => undefined);
    return;
  }
  await replaceWith(await writeTemp(spool, `progress-${stack}`, `${JSON.stringify(ProgressSchema.parse(p))}\n`), file);
}

/** The progress of the deploy of `jobId`, if one is running; a file that is not valid is left out. */
export async function readProgressOf(spool: Spool, jobId: string): Promise<Progress | null> {
  const names = (await fs.readdir(spool.dir("state")).catch(() => [])).filter((n) => /^_progress\..+\.json$/.test(n));
  for (const n of names) {
    const text = await readBounded(spool.file("state", n), 64 * 1024).catch(() => null);
    if (text === null || isUnreadable(text)) continue;
    const parsed = ProgressSchema.safeParse(
      (() => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          return null;
        }
      })(),
    );
    if (parsed.success && parsed.data.jobId === jobId) return parsed.data;
  }
  return null;
}
