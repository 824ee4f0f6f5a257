import { z } from "zod";
import { describeIssues } from "../lib/zod.ts";
import { DeployJobSchema, JOB_VERSION, branchOf, sameRepository, tagMatches, tagOf, type DeployJob } from "../spool/index.ts";
import type { ApiConfig } from "./config.ts";
import { HttpError } from "./errors.ts";

export type Decision = { kind: "ping" } | { kind: "ignored"; reason: string } | { kind: "deploy"; job: DeployJob };

const Repo = z.object({ full_name: z.string() });
const Sender = z.object({ login: z.string() }).nullish();
const Commit = z.object({ timestamp: z.string() }).nullish();

const PushPayload = z.object({
  ref: z.string(),
  before: z.string().optional(),
  after: z.string(),
  forced: z.boolean().optional(),
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

type Deploy = ApiConfig["deploy"];

/** The job a deploying delivery becomes; a payload whose fields do not make a valid job is a 400. */
function jobFrom(
  delivery: Delivery,
  fields: Pick<DeployJob, "repository" | "ref" | "sha"> & { committedAt?: string; sender?: string; before?: string; forced?: boolean },
): Decision {
  const { committedAt, sender, before, forced, ...rest } = fields;
  const candidate = {
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: delivery.id,
    event: delivery.event,
    ...rest,
    committedAt: committedAt ?? delivery.receivedAt.toISOString(),
    ...(before !== undefined ? { before } : {}),
    ...(forced !== undefined ? { forced } : {}),
    sender: sender ?? "unknown",
    receivedAt: delivery.receivedAt.toISOString(),
  };
  const job = DeployJobSchema.safeParse(candidate);
  if (!job.success) throw new HttpError(400, `payload does not make a valid job: ${describeIssues(job.error)}`);
  return { kind: "deploy", job: job.data };
}

const otherRepository = (name: string, deploy: Deploy): Decision | undefined =>
  deploy.repository && !sameRepository(name, deploy.repository)
    ? { kind: "ignored", reason: `repository ${name} is not DEPLOY_REPOSITORY` }
    : undefined;

function decidePush(delivery: Delivery, deploy: Deploy): Decision {
  const p = parse(PushPayload, delivery.payload, delivery.event);
  const other = otherRepository(p.repository.full_name, deploy);
  if (other) return other;
  if (p.deleted === true || ZERO_SHA.test(p.after)) return { kind: "ignored", reason: `deletion of ${p.ref}` };
  const branch = branchOf(p.ref);
  const tag = tagOf(p.ref);
  if (tag !== null) {
    if (deploy.tags.length === 0) return { kind: "ignored", reason: "tag pushes do not deploy (DEPLOY_TAGS is off)" };
    if (!tagMatches(deploy.tags, tag)) return { kind: "ignored", reason: `tag ${tag} matches no DEPLOY_TAGS pattern` };
  } else if (branch === null || !deploy.branches.includes(branch)) {
    return { kind: "ignored", reason: `ref ${p.ref} is not a branch in DEPLOY_BRANCHES` };
  }
  const chain = p.before !== undefined && /^[0-9a-f]{40}$/.test(p.before) ? { before: p.before, forced: p.forced ?? false } : {};
  return jobFrom(delivery, {
    repository: p.repository.full_name,
    ref: p.ref,
    sha: p.after,
    committedAt: p.head_commit?.timestamp,
    sender: p.sender?.login,
    ...chain,
  });
}

function decideWorkflowRun(delivery: Delivery, deploy: Deploy): Decision {
  const p = parse(WorkflowRunPayload, delivery.payload, delivery.event);
  const run = p.workflow_run;
  const other = otherRepository(p.repository.full_name, deploy);
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
  const ref = `refs/heads/${run.head_branch}`;
  return jobFrom(delivery, {
    repository: p.repository.full_name,
    ref,
    sha: run.head_sha,
    committedAt: run.head_commit?.timestamp,
    sender: p.sender?.login,
  });
}

/**
 * Decide what a verified delivery asks for: a pong, nothing (with the reason), or a deploy job.
 * Refs and names from the payload are only ever compared as strings here.
 */
export function decide(delivery: Delivery, deploy: Deploy): Decision {
  const { event } = delivery;
  if (event === "ping") return { kind: "ping" };
  if (event !== "push" && event !== "workflow_run") return { kind: "ignored", reason: `event ${event} does not deploy` };
  if (!deploy.events.includes(event)) return { kind: "ignored", reason: `event ${event} is not in DEPLOY_EVENTS` };
  return event === "push" ? decidePush(delivery, deploy) : decideWorkflowRun(delivery, deploy);
}
