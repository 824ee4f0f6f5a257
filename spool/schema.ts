import { z } from "zod";
import { isoTime } from "../lib/zod.ts";

/** Version of the job file format; bump it (and keep reading the old one) on any change. */
export const JOB_VERSION = 1;

/**
 * A delivery id becomes the job's file name, so it is held to a strict, path-free charset.
 * GitHub's `X-GitHub-Delivery` is a UUID; manual jobs use `manual-<sha>-<time>`.
 */
export const DELIVERY_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,79}$/;
export const COMMIT_SHA = /^[0-9a-f]{40}$/;
/** A commit as people read it in logs, reasons and listings: its first 12 hex digits. */
export const shortSha = (sha: string): string => sha.slice(0, 12);
export const REPOSITORY = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
/** GitHub's owner/name are case-insensitive: the API's filter and the agent's routing compare alike. */
export const sameRepository = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
/** The branch a `refs/heads/<branch>` ref names, or null for a tag or anything else. */
export const branchOf = (ref: string): string | null => (ref.startsWith("refs/heads/") ? ref.slice("refs/heads/".length) : null);
/** A git ref as GitHub sends it; only ever compared as a string, never used as a path or argument. */
const REF = /^refs\/(heads|tags)\/[^\s\0]{1,240}$/;

export const DeployJobSchema = z.strictObject({
  version: z.literal(JOB_VERSION),
  kind: z.literal("deploy"),
  deliveryId: z.string().regex(DELIVERY_ID, "deliveryId must be 1-80 of [A-Za-z0-9-], starting alphanumeric"),
  event: z.enum(["push", "workflow_run", "manual"]),
  repository: z.string().regex(REPOSITORY, "repository must be owner/name"),
  ref: z.string().regex(REF, "ref must be refs/heads/<branch> or refs/tags/<tag>"),
  sha: z.string().regex(COMMIT_SHA, "sha must be 40 lowercase hex characters"),
  /** The commit's own date: shown to people, never used to order or judge (a committer sets it). */
  committedAt: isoTime,
  /** For a push: the branch's commit before it (GitHub's push chain, `before` → `sha`), and whether it was forced. */
  before: z.string().regex(COMMIT_SHA, "before must be 40 lowercase hex characters").optional(),
  forced: z.boolean().optional(),
  sender: z.string().min(1).max(100),
  /** When the API received it (the API's clock): what orders pending jobs. */
  receivedAt: isoTime,
});

/** Every kind of job the spool carries; the agent parses each file against this again on read. */
export const JobSchema = z.discriminatedUnion("kind", [DeployJobSchema]);

export type DeployJob = z.infer<typeof DeployJobSchema>;
export type Job = z.infer<typeof JobSchema>;

/** The file name of a job: derived from its validated delivery id, so a redelivery maps to the same name. */
export function jobFileName(job: Job): string {
  return `${job.deliveryId}.json`;
}

/** The job id a well-formed file name in `new/` or `work/` stands for, or null when the name is not one of ours. */
export function jobIdFromFileName(name: string): string | null {
  if (!name.endsWith(".json")) return null;
  const id = name.slice(0, -".json".length);
  return DELIVERY_ID.test(id) ? id : null;
}
