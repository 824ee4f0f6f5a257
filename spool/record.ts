import { z } from "zod";
import { isoTime } from "../lib/zod.ts";
import { RecordedJobSchema, ReleaseSchema, TRIGGERS } from "./schema.ts";

/** `planned`: DRY_RUN=1, the plan was recorded and nothing deployed. */
export const OUTCOMES = ["success", "failed", "rolled_back", "superseded", "stale", "invalid", "planned", "blocked"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Outcomes that land in `done/`; the rest land in `failed/`. */
const DONE_OUTCOMES: ReadonlySet<Outcome> = new Set(["success", "superseded", "stale", "planned"]);

export function directoryFor(outcome: Outcome): "done" | "failed" {
  return DONE_OUTCOMES.has(outcome) ? "done" : "failed";
}

export const AttemptSchema = z.object({
  attempt: z.number().int().positive(),
  command: z.array(z.string()),
  exitCode: z.number().int().nullable(),
  timedOut: z.boolean(),
  durationMs: z.number().nonnegative(),
  outputTail: z.string(),
  error: z.string().optional(),
});

/** What a deploy changed (or, for DRY_RUN, would change), per service, as `swarmhook plan` prints it. */
export const PlanSchema = z.object({
  summary: z.string(),
  unresolved: z.array(z.string()).default([]),
  changes: z.array(
    z.object({
      service: z.string(),
      change: z.enum(["add", "remove", "update"]),
      fields: z.array(z.object({ field: z.string(), from: z.string(), to: z.string() })),
    }),
  ),
});

export const ServiceStateSchema = z.object({
  name: z.string(),
  image: z.string().nullable(),
  wantedImage: z.string().nullable(),
  updateState: z.string().nullable(),
  updateMessage: z.string().nullable(),
  desired: z.number().int().nullable(),
  running: z.number().int(),
});

/**
 * The record written beside every finished job. It carries the job itself, so one file tells the
 * whole story; `job` is null only for a quarantined file that never parsed.
 */
export const ResultRecordSchema = z.object({
  outcome: z.enum(OUTCOMES),
  reason: z.string().optional(),
  jobId: z.string(),
  job: RecordedJobSchema.nullable(),
  stack: z.string().nullable(),
  timings: z.object({
    received: isoTime.nullable(),
    claimed: isoTime.nullable(),
    started: isoTime.nullable(),
    finished: isoTime,
  }),
  attempts: z.array(AttemptSchema),
  services: z.array(ServiceStateSchema),
  warnings: z.array(z.string()),
  supersededBy: z.string().optional(),
  quarantinedAs: z.string().optional(),
  /** What set the job off (absent in records written before it was recorded). */
  trigger: z.enum(TRIGGERS).optional(),
  /** After a verified deploy: each service's image as the cluster runs it and the rendered stack's hash. */
  release: ReleaseSchema.optional(),
  /** What the deploy changed against the running services (every deploy that got as far as rendering). */
  plan: PlanSchema.optional(),
  /** A git stack deployed a commit neither ahead of nor behind the one running (a force-push). */
  forced: z.boolean().optional(),
  /** The job the watcher queued next because of this one (ON_FAILURE=rollback: the rollback's id). */
  followedBy: z.string().optional(),
});

export type Attempt = z.infer<typeof AttemptSchema>;
export type ServiceState = z.infer<typeof ServiceStateSchema>;
export type ResultRecord = z.infer<typeof ResultRecordSchema>;

/** How long a job took, from its start (or its claim, for one that never started) to its finish; null when neither is known. */
export function recordDurationMs(rec: ResultRecord): number | null {
  const from = rec.timings.started ?? rec.timings.claimed;
  return from ? Math.max(0, Date.parse(rec.timings.finished) - Date.parse(from)) : null;
}
