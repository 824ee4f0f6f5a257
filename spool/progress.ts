import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import type { Spool } from "./layout.ts";
import { COMMIT_SHA, STACK_NAME } from "./schema.ts";
import { readStateNotes, writeStateNote } from "./state.ts";

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
  /** A stack deployed in stages: the stage moving now (its `swarmhook.stage` number), the how-manieth, of how many. */
  stage: z.strictObject({ n: z.number().int(), index: z.number().int().min(1), of: z.number().int().min(1) }).optional(),
  services: z
    .array(
      z.strictObject({
        /** The service's name in the stack file (`web`). */
        name: z.string().min(1).max(200),
        /** Running tasks on the version this deploy asks for. */
        updated: z.number().int().min(0),
        desired: z.number().int().min(0),
        /** pulling, starting, running, updating, rolling back, rolled back, paused; waiting (a later stage); for a job: running, completed, failed */
        state: z.string().min(1).max(40),
        /** Its stage, when the stack is deployed in stages. */
        stage: z.number().int().optional(),
      }),
    )
    .max(200),
});
export type Progress = z.infer<typeof ProgressSchema>;
/** Publish (or, with null, remove) the progress of `stack`'s running deploy. */
export const writeProgress = (spool: Spool, stack: string, p: Progress | null): Promise<void> =>
  writeStateNote(spool, "progress", stack, ProgressSchema, p);

/** The progress of the deploy of `jobId`, if one is running; a file that is not valid is left out. */
export async function readProgressOf(spool: Spool, jobId: string): Promise<Progress | null> {
  return (await readStateNotes(spool, "progress", ProgressSchema)).find((p) => p.jobId === jobId) ?? null;
}
