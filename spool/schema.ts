import { createHash, randomBytes } from "node:crypto";
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
/** The tag a `refs/tags/<tag>` ref names, or null. */
export const tagOf = (ref: string): string | null => (ref.startsWith("refs/tags/") ? ref.slice("refs/tags/".length) : null);
/** Whether `tag` matches one of DEPLOY_TAGS's patterns (`*` any run of characters, `?` one; compared as a string, never a path). */
export function tagMatches(patterns: readonly string[], tag: string): boolean {
  return patterns.some((p) =>
    new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\/-]/g, "\\$&")
        .replace(/\*/g, ".*")
        .replace(/\?/g, ".")}$`,
    ).test(tag),
  );
}
/** A git ref as GitHub sends it; only ever compared as a string, never used as a path or argument. */
/** Docker's own rule for stack names, which also keeps them safe as file names. */
export const STACK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/;

const REF = /^refs\/(heads|tags)\/[^\s\0]{1,240}$/;

export const DeployJobSchema = z.strictObject({
  version: z.literal(JOB_VERSION),
  kind: z.literal("deploy"),
  deliveryId: z.string().regex(DELIVERY_ID, "deliveryId must be 1-80 of [A-Za-z0-9-], starting alphanumeric"),
  /** `reconcile`: written by the watcher's own reconcile loop for a branch tip no webhook brought (judged like a push). */
  event: z.enum(["push", "workflow_run", "manual", "reconcile"]),
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
  /** Set by the writer when this delivery id already ended once (GitHub's "Redeliver"): shown, never decisive. */
  redelivery: z.literal(true).optional(),
  /**
   * The one stack this copy of a push is for, written by the watcher when a push deploys several
   * stacks (one job per stack), and by its reconcile loop. Honoured only when that stack deploys the
   * job's repository and branch anyway: a job that names it gets no more than a push would.
   */
  stack: z.string().regex(STACK_NAME, "stack must be a Docker stack name").optional(),
});

/** What a verified deploy ran, as the cluster runs it: enough to deploy exactly that again. */
export const ReleaseSchema = z.strictObject({
  /** sha256 of the stack file as `docker stack config` rendered it for this deploy. */
  stackFileHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  images: z.array(
    z.strictObject({
      /** The service's name in the stack file (`web`, not `app_web`). */
      service: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/),
      /** The image as the service spec holds it: `name:tag@sha256:…` when a registry gave a digest. */
      image: z.string().min(1).max(512),
      /** false: no registry digest (a locally built image); the reference is all that was recorded. */
      pinned: z.boolean(),
    }),
  ),
  /** When the watcher resolved the images to these digests, before the deploy changed anything (absent in older records). */
  resolvedAt: z.iso.datetime().optional(),
  /** The content-named secret versions the release ran with (`<stack>_<key>_<12 hex>`): a rollback puts these back. */
  secrets: z
    .array(
      z.strictObject({
        key: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/),
        name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,190}_[0-9a-f]{12}$/),
      }),
    )
    .max(100)
    .optional(),
});
export type Release = z.infer<typeof ReleaseSchema>;

/** A record the watcher wrote of a successful deploy: `done/<stamp>-<job id>.json`. */
export const RECORD_PATH = /^done\/\d{8}T\d{9}Z-[A-Za-z0-9._-]{1,200}\.json$/;

/**
 * A request to deploy a recorded release again, as it sits in `new/` and `work/`: it names the
 * record to go back to and nothing else. Written by `swarmhook rollback` or by the watcher itself
 * after a failed deploy (ON_FAILURE=rollback). It carries no image, commit or repository: the
 * watcher reads all of that from its own record (resolveRollback), so whoever can write `new/` can
 * at most ask for a release that already ran well there. Never stale; superseded only by a job
 * received after it.
 */
export const RollbackRequestSchema = z.strictObject({
  version: z.literal(JOB_VERSION),
  kind: z.literal("rollback"),
  deliveryId: z.string().regex(DELIVERY_ID, "deliveryId must be 1-80 of [A-Za-z0-9-], starting alphanumeric"),
  stack: z.string().regex(STACK_NAME, "stack must be a Docker stack name"),
  /** The record of the successful deploy to go back to. */
  fromRecord: z.string().regex(RECORD_PATH, "fromRecord must name a record in done/ (done/<stamp>-<job id>.json)"),
  /** `heal`: the reconcile loop puts a drifted stack back on the release it last deployed (SELF_HEAL). */
  cause: z.enum(["operator", "failed-deploy", "heal"]),
  /** For `failed-deploy`: the job whose deploy failed. */
  failedJobId: z.string().regex(DELIVERY_ID).optional(),
  sender: z.string().min(1).max(100),
  receivedAt: isoTime,
});

/**
 * A rollback as the watcher deploys and records it: the request, with the commit, repository, ref
 * and release read from the watcher's own record of `fromRecord`. Never read from the spool's
 * request directories (`fromRecord` is optional only for records written before requests named it).
 */
export const RollbackJobSchema = z.strictObject({
  ...RollbackRequestSchema.shape,
  fromRecord: z
    .string()
    .regex(/^done\/[A-Za-z0-9._-]{1,200}$/)
    .optional(),
  repository: z.string().regex(REPOSITORY, "repository must be owner/name"),
  ref: z.string().regex(REF, "ref must be refs/heads/<branch> or refs/tags/<tag>"),
  /** The commit going back into service. */
  sha: z.string().regex(COMMIT_SHA, "sha must be 40 lowercase hex characters"),
  release: ReleaseSchema,
});

/** A fresh delivery id for a rollback job: `rollback-<short sha>-<time>-<random>` (`heal-…` for a heal). */
export function rollbackJobId(sha: string, now: Date, prefix: "rollback" | "heal" = "rollback"): string {
  return `${prefix}-${shortSha(sha)}-${now.getTime().toString(36)}-${randomBytes(3).toString("hex")}`;
}

/**
 * The one delivery id the reconcile loop gives a commit of a stack: `reconcile-<sha>-<8 hex of the
 * stack's name>`. The same commit always maps to the same id, so its job is published once (the
 * marker in ids/ answers a second publish).
 */
export function reconcileJobId(stack: string, sha: string): string {
  return `reconcile-${sha}-${createHash("sha256").update(stack).digest("hex").slice(0, 8)}`;
}

/** The kinds of job this version reads; a job of another kind is quarantined with that said. */
export const JOB_KINDS = ["deploy", "rollback"] as const;

/** Every kind of request the spool carries in `new/` and `work/`; the agent parses each file against this again on read. */
export const JobSchema = z.discriminatedUnion("kind", [DeployJobSchema, RollbackRequestSchema]);
/** A job as the watcher deploys it and its records carry it: a deploy, or a rollback resolved from a record. */
export const RecordedJobSchema = z.discriminatedUnion("kind", [DeployJobSchema, RollbackJobSchema]);

export type DeployJob = z.infer<typeof DeployJobSchema>;
export type RollbackRequest = z.infer<typeof RollbackRequestSchema>;
export type RollbackJob = z.infer<typeof RollbackJobSchema>;
/** What `new/` and `work/` hold: requests. */
export type SpoolJob = z.infer<typeof JobSchema>;
/** What the watcher deploys and records. */
export type Job = z.infer<typeof RecordedJobSchema>;

/** Why a parsed JSON value is a job this version cannot read at all (a newer format or kind), or null. */
export function unknownJobFormat(data: unknown): string | null {
  if (typeof data !== "object" || data === null) return null;
  const { version, kind } = data as { version?: unknown; kind?: unknown };
  if (typeof version === "number" && version > JOB_VERSION)
    return `job format version ${version} is newer than this watcher's (${JOB_VERSION}): upgrade the watcher`;
  if (typeof kind === "string" && !(JOB_KINDS as readonly string[]).includes(kind))
    return `unknown job kind "${kind.slice(0, 40)}" (this watcher knows ${JOB_KINDS.join(", ")}): upgrade the watcher`;
  if (kind === "rollback" && ("release" in data || "sha" in data || "repository" in data))
    return "a rollback job names the record to go back to (fromRecord), never images, a commit or a repository: refused";
  return null;
}

/** What set a job off, as records and the history show it. */
export const TRIGGERS = ["push", "manual", "rollback", "redelivery", "reconcile", "heal"] as const;
export type Trigger = (typeof TRIGGERS)[number];
export function triggerOf(job: Job | SpoolJob): Trigger {
  if (job.kind === "rollback") return job.cause === "heal" ? "heal" : "rollback";
  if (job.redelivery) return "redelivery";
  return job.event === "manual" ? "manual" : job.event === "reconcile" ? "reconcile" : "push";
}

/** The file name of a job: derived from its validated delivery id, so a redelivery maps to the same name. */
export function jobFileName(job: Job | SpoolJob): string {
  return `${job.deliveryId}.json`;
}

/** The job id a well-formed file name in `new/` or `work/` stands for, or null when the name is not one of ours. */
export function jobIdFromFileName(name: string): string | null {
  if (!name.endsWith(".json")) return null;
  const id = name.slice(0, -".json".length);
  return DELIVERY_ID.test(id) ? id : null;
}
