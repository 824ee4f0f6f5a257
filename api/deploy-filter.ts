import { z } from "zod";
import { JOB_VERSION, JobSchema, describeIssues, sameRepository, type Job } from "../spool/index.ts";
import type { ApiConfig } from "./config.ts";
import { HttpError } from "./errors.ts";

export type Decision = { kind: "ping" } | { kind: "ignored"; reason: string } | { kind: "deploy"; job: Job };

const Repo = z.object({ full_name: z.string() });
const Sender = z.object({ login: z.string() }).nullish();
const Commit = z.object({ timestamp: z.string() }).nullish();

const PushPayload = z.object({
  ref: z.string(),
  after: z.string(),
  deleted: z.boolean().optional(),
  repository: Repo,
  head_commit: Commit,
  sender: Sender,
});

const WorkflowRunPayload = z.object({
  action: z.string(),
  repository: Repo,
  sender: Sender,
  workflow_run: z.object({
    name: z.string().nullish(),
    head_branch: z.string().nullish(),
    head_sha: z.string(),
    conclusion: z.string().nullish(),
    head_commit: Commit,
    head_repository: Repo.nullish(),
  }),
});

const ZERO_SHA = /^0{40}$/;

export interface Delivery {
  id: string;
  event: string;
  payload: unknown;
  receivedAt: Date;
}

function parse<T extends z.ZodType>(schema: T, payload: unknown, event: string): z.infer<T> {
  const r = schema.safeParse(payload);
  if (!r.success) throw new HttpError(400, `not a ${event} payload: ${describeIssues(r.error)}`);
  return r.data;
}

/**
 * Decide what a verified delivery asks for: a pong, nothing (with the reason), or a deploy job.
 * Refs and names from the payload are only ever compared as strings here.
 */
export function decide(delivery: Delivery, deploy: ApiConfig["deploy"]): Decision {
  const { event } = delivery;
  if (event === "ping") return { kind: "ping" };
  if (event !== "push" && event !== "workflow_run") return { kind: "ignored", reason: `event ${event} does not deploy` };
  if (!deploy.events.includes(event)) return { kind: "ignored", reason: `event ${event} is not in DEPLOY_EVENTS` };

  const base = (repository: string, ref: string, sha: string, committedAt: string | undefined, sender: string | undefined) => {
    const candidate = {
      version: JOB_VERSION,
      kind: "deploy",
      deliveryId: delivery.id,
      event,
      repository,
      ref,
      sha,
      committedAt: committedAt ?? delivery.receivedAt.toISOString(),
      sender: sender ?? "unknown",
      receivedAt: delivery.receivedAt.toISOString(),
    };
    const job = JobSchema.safeParse(candidate);
    if (!job.success) throw new HttpError(400, `payload does not make a valid job: ${describeIssues(job.error)}`);
    return { kind: "deploy", job: job.data } as const;
  };
  const repoIgnored = (name: string): Decision | undefined =>
    deploy.repository && !sameRepository(name, deploy.repository)
      ? { kind: "ignored", reason: `repository ${name} is not DEPLOY_REPOSITORY` }
      : undefined;

  if (event === "push") {
    const p = parse(PushPayload, delivery.payload, event);
    const other = repoIgnored(p.repository.full_name);
    if (other) return other;
    if (p.deleted === true || ZERO_SHA.test(p.after)) return { kind: "ignored", reason: `deletion of ${p.ref}` };
    if (p.ref.startsWith("refs/tags/")) {
      if (!deploy.tags) return { kind: "ignored", reason: "tag pushes do not deploy (DEPLOY_TAGS is off)" };
    } else if (!p.ref.startsWith("refs/heads/") || !deploy.branches.includes(p.ref.slice("refs/heads/".length))) {
      return { kind: "ignored", reason: `ref ${p.ref} is not a branch in DEPLOY_BRANCHES` };
    }
    return base(p.repository.full_name, p.ref, p.after, p.head_commit?.timestamp, p.sender?.login);
  }

  const p = parse(WorkflowRunPayload, delivery.payload, event);
  const run = p.workflow_run;
  const other = repoIgnored(p.repository.full_name);
  if (other) return other;
  if (p.action !== "completed") return { kind: "ignored", reason: `workflow_run action ${p.action}` };
  if (run.conclusion !== "success") return { kind: "ignored", reason: `workflow_run conclusion ${run.conclusion ?? "none"}` };
  // a pull request from a fork may carry a branch named like ours: only runs on our own repository deploy
  if (run.head_repository && !sameRepository(run.head_repository.full_name, p.repository.full_name)) {
    return { kind: "ignored", reason: `workflow_run on a fork (${run.head_repository.full_name})` };
  }
  if (!run.head_branch || !deploy.branches.includes(run.head_branch)) {
    return { kind: "ignored", reason: `branch ${run.head_branch ?? "none"} is not in DEPLOY_BRANCHES` };
  }
  if (deploy.workflows.length > 0 && !deploy.workflows.includes(run.name ?? "")) {
    return { kind: "ignored", reason: `workflow ${run.name ?? "unnamed"} is not in DEPLOY_WORKFLOWS` };
  }
  return base(p.repository.full_name, `refs/heads/${run.head_branch}`, run.head_sha, run.head_commit?.timestamp, p.sender?.login);
}
