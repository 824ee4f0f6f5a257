import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/core";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import type { Logger } from "pino";
import type { OutboxEntry } from "./outbox.ts";
import type { GithubAuth } from "../config.ts";

const ReportingOctokit = Octokit.plugin(retry, throttling);
export type GithubClient = InstanceType<typeof ReportingOctokit>;

/** Longest wait for a rate limit inside one request; a longer one is left to the outbox's backoff. */
const MAX_INLINE_WAIT_S = 60;
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * An octokit for the watcher's reports: a token or a GitHub App installation (tokens minted and
 * renewed by @octokit/auth-app), GitHub's primary and secondary rate limits honoured by the
 * throttling plugin (waits of up to a minute inside the request, longer ones left to the outbox),
 * 5xx retried by the retry plugin. octokit's own log goes to pino; tokens are never logged.
 * @example
 * const gh = createGithubClient({ apiUrl: "https://api.github.com", auth: { type: "token", token } }, log, "0.1.0");
 */
export function createGithubClient(o: { apiUrl: string; auth: GithubAuth }, log: Logger, version: string): GithubClient {
  const onLimit = (kind: string) => (retryAfter: number, options: { method: string; url: string }, _o: unknown, retryCount: number) => {
    const again = retryAfter <= MAX_INLINE_WAIT_S && retryCount < 2;
    log.warn({ retryAfterS: retryAfter, request: `${options.method} ${options.url}`, waiting: again }, `GitHub ${kind} rate limit`);
    return again;
  };
  const auth =
    o.auth.type === "token"
      ? { auth: o.auth.token }
      : {
          authStrategy: createAppAuth,
          auth: { appId: o.auth.appId, privateKey: o.auth.privateKey, installationId: o.auth.installationId },
        };
  return new ReportingOctokit({
    baseUrl: o.apiUrl,
    userAgent: `swarmhook/${version}`,
    ...auth,
    throttle: { onRateLimit: onLimit("primary"), onSecondaryRateLimit: onLimit("secondary") },
    request: { fetch: (url: string, init: RequestInit) => fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }) },
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (m: string) => log.warn({ octokit: m }, "octokit"),
      error: (m: string) => log.warn({ octokit: m }, "octokit"),
    },
  });
}

/** A failure GitHub will answer the same way however often it is asked: the report is dropped (logged), not retried. */
export function isPermanent(err: unknown): boolean {
  const status = (err as { status?: number }).status;
  return status === 400 || status === 404 || status === 410 || status === 422;
}

/** How a failed request reads in a log line or an outbox entry: status and GitHub's message, never a header. */
export function describeGithubError(err: unknown): string {
  const e = err as { status?: number; message?: string };
  return `${e.status ? `HTTP ${e.status}: ` : ""}${(e.message ?? String(err)).split("\n")[0]?.slice(0, 300)}`;
}

/**
 * Deliver one GitHub step of an outbox entry. A `deployment` step creates the job's Deployment and
 * returns its id; a status step needs that id (passed in) for a Deployment status, none for a commit
 * status. Throws octokit's RequestError (with `status`) or a network error.
 */
export async function sendGithubStep(gh: GithubClient, entry: OutboxEntry, deploymentId: number | null): Promise<number | null> {
  const r = entry.report;
  if (r.target !== "github") throw new Error("not a GitHub report");
  const [owner, repo] = r.repository.split("/") as [string, string];
  const step = r.step;
  if (step.type === "deployment") {
    const res = await gh.request("POST /repos/{owner}/{repo}/deployments", {
      owner,
      repo,
      ref: r.sha,
      task: "deploy",
      auto_merge: false,
      required_contexts: [],
      environment: r.environment,
      description: step.description,
      production_environment: r.production,
      transient_environment: false,
      payload: { stack: r.stack, jobId: entry.jobId },
    });
    if (res.status !== 201 || !("id" in res.data))
      throw Object.assign(new Error("GitHub did not create the Deployment"), { status: res.status });
    return Number(res.data.id);
  }
  if (step.type === "deployment_status") {
    if (deploymentId === null) throw new Error("no Deployment id for this job");
    await gh.request("POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses", {
      owner,
      repo,
      deployment_id: deploymentId,
      state: step.state,
      description: step.description,
      environment: r.environment,
      ...(r.environmentUrl ? { environment_url: r.environmentUrl } : {}),
      ...(r.logUrl ? { log_url: r.logUrl } : {}),
      auto_inactive: true,
    });
    return deploymentId;
  }
  await gh.request("POST /repos/{owner}/{repo}/statuses/{sha}", {
    owner,
    repo,
    sha: r.sha,
    state: step.state,
    description: step.description,
    context: `swarmhook/${r.stack}`,
    ...(r.logUrl ? { target_url: r.logUrl } : {}),
  });
  return deploymentId;
}

/**
 * A token for git over https to GitHub's own host (github.com for api.github.com; the Enterprise host
 * otherwise), from the watcher's GitHub credentials: the token itself, or a fresh installation token
 * of the App (cached and renewed by @octokit/auth-app). Any other host gets none: the token never
 * leaves GitHub.
 */
export function createGitToken(o: { apiUrl: string; auth: GithubAuth }, gh: GithubClient): (url: string) => Promise<string | undefined> {
  const api = new URL(o.apiUrl).hostname;
  const web = api === "api.github.com" ? "github.com" : api;
  return async (url) => {
    if (new URL(url).hostname !== web) return undefined;
    if (o.auth.type === "token") return o.auth.token;
    return ((await gh.auth({ type: "installation" })) as { token: string }).token;
  };
}

/**
 * Whether `sha` is in the history of `branch` (GitHub's compare: the commit is the branch's tip or
 * behind it). What a workflow_run job of a stack file on this node is judged by: the run's
 * `head_branch` holds a tag's name for a tag-triggered run, so the name alone proves nothing.
 */
export async function commitOnBranch(gh: GithubClient, repository: string, branch: string, sha: string): Promise<boolean> {
  const [owner, repo] = repository.split("/") as [string, string];
  const r = await gh.request("GET /repos/{owner}/{repo}/compare/{basehead}", { owner, repo, basehead: `${branch}...${sha}`, per_page: 1 });
  return r.data.status === "identical" || r.data.status === "behind";
}

/**
 * The commit a branch's tip names on GitHub, and its committer date (shown only), for the reconcile
 * loop of a stack file on this node. Throws what octokit throws (describeGithubError says it).
 */
export async function branchTip(
  gh: GithubClient,
  repository: string,
  branch: string,
): Promise<{ sha: string; committedAt: string | null }> {
  const [owner, repo] = repository.split("/") as [string, string];
  const r = await gh.request("GET /repos/{owner}/{repo}/branches/{branch}", { owner, repo, branch });
  const sha = r.data.commit.sha;
  if (!/^[0-9a-f]{40}$/.test(sha))
    throw new Error(`GitHub named the tip of ${branch} ${JSON.stringify(sha.slice(0, 64))}: not a commit SHA`);
  const date = r.data.commit.commit.committer?.date;
  return { sha, committedAt: date && !Number.isNaN(Date.parse(date)) ? new Date(date).toISOString() : null };
}
