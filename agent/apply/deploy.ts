import type { Logger } from "pino";
import type { Clock } from "../../lib/clock.ts";
import type { Attempt, Job, Release, ServiceState } from "../../spool/index.ts";
import type { AgentConfig, StackConfig } from "../config.ts";
import type { DockerResult, DockerRunner } from "../docker.ts";
import { createLineFilter, decisiveLine } from "../docker-lines.ts";
import { planStack, type Plan } from "../prepare/index.ts";
import { deployEnv, releaseOf, renderStack, type Rendered, type VersionedObject } from "../prepare/index.ts";
import { policyRefusals } from "../prepare/index.ts";
import { checkHealth, inspectStack, type Verdict } from "../verify/index.ts";

/** Output that means "try again later": the daemon, the network or a registry, not the stack. */
const TRANSIENT = [
  /Cannot connect to the Docker daemon/i,
  /error during connect/i,
  /connection refused/i,
  /i\/o timeout/i,
  /TLS handshake timeout/i,
  /context deadline exceeded/i,
  /toomanyrequests/i,
  /net\/http: request canceled/i,
  /\b50[234] (Bad Gateway|Service Unavailable|Gateway Timeout)/i,
  /rpc error: code = (Unavailable|DeadlineExceeded)/i,
  /The swarm does not have a leader/i,
];
const DIGEST_WARNING = /could not be accessed on a registry to record/;
/** The longest wait between two attempts. */
export const MAX_BACKOFF_MS = 60_000;

/** The part of the watcher's configuration a deploy follows. */
export type DeployPolicy = Pick<AgentConfig, "deployTimeoutMs" | "retries" | "retryBackoffMs" | "healthTimeoutMs" | "digestPolicy"> & {
  /** DRY_RUN=1: plan and record, deploy nothing. */
  dryRun?: boolean;
  /** How often to inspect the services while they converge (default 1 s). */
  verifyEveryMs?: number;
  /** How often to poll the health URL (default 1 s). */
  healthEveryMs?: number;
};

export interface DeployResult {
  /** invalid: the commit's stack was refused before anything ran (it reaches outside its checkout, or its policy refuses it). */
  outcome: "success" | "failed" | "rolled_back" | "planned" | "invalid";
  reason?: string;
  attempts: Attempt[];
  services: ServiceState[];
  warnings: string[];
  /** Swarm took the new spec (a failure after this leaves it serving; before it, nothing changed). */
  applied: boolean;
  /** On success: what the stack now runs, to be recorded and deployed again by a rollback. */
  release?: Release;
  /** What the deploy changes against the running services (absent when it could not be planned). */
  plan?: Plan;
  /** Configs and secrets this deploy named by their content (stacks from git), for pruning old versions. */
  objects?: VersionedObject[];
}

export interface DeployDeps {
  docker: DockerRunner;
  log: Logger;
  policy: DeployPolicy;
  stack: StackConfig;
  job: Job;
  clock: Clock;
}

export function isTransient(r: DockerResult): boolean {
  return r.spawnError === undefined && !r.timedOut && r.exitCode !== 0 && TRANSIENT.some((re) => re.test(r.outputTail));
}

function toAttempt(n: number, r: DockerResult): Attempt {
  const { command, exitCode, timedOut, durationMs, outputTail } = r;
  return { attempt: n, command, exitCode, timedOut, durationMs, outputTail, ...(r.spawnError ? { error: r.spawnError } : {}) };
}

/** `docker stack deploy`, retried with exponential backoff (at most MAX_BACKOFF_MS) while the failure is transient. */
async function runDeploy(d: DeployDeps, files: string[], deadline: number, attempts: Attempt[]): Promise<DockerResult | undefined> {
  const { docker, log, policy, stack, clock } = d;
  const env = deployEnv(d.job.sha, d.stack.vars);
  const args = ["stack", "deploy", ...files.flatMap((f) => ["-c", f]), stack.name, "--with-registry-auth", "--detach=false"];
  let last: DockerResult | undefined;
  for (let n = 1; n <= policy.retries + 1; n++) {
    log.info({ attempt: n, command: ["docker", ...args] }, "deploy started");
    const onLine = createLineFilter((line) => log.info({ docker: line }, "docker"));
    last = await docker.run(args, { env, timeoutMs: Math.max(1000, deadline - clock.now().getTime()), onLine });
    attempts.push(toAttempt(n, last));
    if (last.exitCode === 0 || last.timedOut || !isTransient(last) || n > policy.retries) break;
    const wait = Math.min(policy.retryBackoffMs * 2 ** (n - 1), MAX_BACKOFF_MS);
    log.warn({ attempt: n, exitCode: last.exitCode, retryInMs: wait }, "deploy failed transiently; retrying");
    await clock.sleep(wait);
  }
  return last;
}

/** Inspect the stack until it converged on the asked images, rolled back, or `deadline` passed. */
async function waitConverged(d: DeployDeps, asked: Map<string, string>, since: Date, deadline: number): Promise<Verdict> {
  const { docker, stack, clock, policy } = d;
  for (;;) {
    const verdict = await inspectStack(docker, stack.name, asked, since, deployEnv(d.job.sha, d.stack.vars));
    if (verdict.status !== "pending" || clock.now().getTime() > deadline) return verdict;
    await clock.sleep(policy.verifyEveryMs ?? 1000);
  }
}

/**
 * The plan is empty (and no image tag could have moved): nothing is deployed, and the stack is
 * still proven to run the commit (converged on the asked images, the health URL) before `success`.
 */
async function verifyUnchanged(d: DeployDeps, rendered: Rendered, plan: Plan, since: Date, deadline: number): Promise<DeployResult> {
  const base = { attempts: [], warnings: [...rendered.warnings], applied: false, plan };
  d.log.info("no changes: docker stack deploy is not run; verifying what runs");
  let verdict: Verdict;
  try {
    verdict = await waitConverged(d, rendered.asked, since, deadline);
  } catch (err) {
    return { ...base, outcome: "failed", reason: `verification failed: ${(err as Error).message}`, services: [] };
  }
  if (verdict.status !== "converged")
    return { ...base, outcome: "failed", reason: `no changes, but ${verdict.reason}`, services: verdict.services };
  if (d.stack.healthUrl) {
    const problem = await checkHealth(d.stack.healthUrl, d.job.sha, d.policy.healthTimeoutMs, {
      clock: d.clock,
      everyMs: d.policy.healthEveryMs,
    });
    if (problem) return { ...base, outcome: "failed", reason: `no changes, but ${problem}`, services: verdict.services };
  }
  const release = releaseOf(d.stack.name, verdict.specImages, rendered.stackFileHash);
  return { ...base, outcome: "success", reason: "no changes", services: verdict.services, release, objects: rendered.objects };
}

/**
 * Deploy one job's commit to one stack and prove it took: the stack rendered (for a rollback, with
 * the recorded images over it), `docker stack deploy` (retried with backoff when the failure is
 * transient), then every service inspected until it converged on the asked images, rolled back, or
 * the deploy timeout ran out; then the health URL, when set. On success the result holds the release.
 * @example
 * const r = await deployJob({ docker, log, policy, stack, job, clock: systemClock });
 * if (r.outcome !== "success") log.error(r.reason);
 */
export async function deployJob(d: DeployDeps): Promise<DeployResult> {
  let rendered: Rendered;
  try {
    rendered = await renderStack(d.docker, d.stack.file, d.stack.name, d.job, { versionObjects: Boolean(d.stack.git), vars: d.stack.vars });
  } catch (err) {
    return {
      outcome: "failed",
      reason: `the stack file could not be rendered: ${(err as Error).message}`,
      attempts: [],
      services: [],
      warnings: [],
      applied: false,
    };
  }
  try {
    const refused = policyRefusals(rendered.doc, d.stack.policy);
    if (refused.length > 0)
      return {
        outcome: "invalid",
        reason: `refused by the stack's policy: ${refused.join("; ")}`,
        attempts: [],
        services: [],
        warnings: [],
        applied: false,
      };
    for (const w of rendered.warnings) d.log.warn(w);
    return await deployRendered(d, rendered);
  } finally {
    await rendered.cleanup();
  }
}

async function deployRendered(d: DeployDeps, rendered: Rendered): Promise<DeployResult> {
  const { log, policy, stack, job, clock } = d;
  const attempts: Attempt[] = [];
  const warnings: string[] = [...rendered.warnings];
  const startedAt = clock.now().getTime();
  const since = new Date(startedAt - 1000); // update states from before this deploy are not ours
  const deadline = startedAt + policy.deployTimeoutMs;
  let applied = false;
  const plan = await planStack(d.docker, stack.name, rendered.doc, deployEnv(job.sha, d.stack.vars)).catch((err: unknown) => {
    log.warn({ err }, "could not plan the deploy: deploying without a plan");
    return undefined;
  });
  if (plan) log.info({ plan: plan.summary }, "plan");
  const fail = (outcome: DeployResult["outcome"], reason: string, services: ServiceState[] = []): DeployResult => ({
    outcome,
    reason,
    attempts,
    services,
    warnings,
    applied,
    ...(plan ? { plan } : {}),
  });
  if (policy.dryRun) return fail("planned", `DRY_RUN: ${plan?.summary ?? "the plan failed"}; nothing deployed`);
  if (plan && plan.changes.length === 0 && plan.unresolved.length === 0) return verifyUnchanged(d, rendered, plan, since, deadline);

  const last = await runDeploy(d, rendered.files, deadline, attempts);
  if (!last) return fail("failed", "no attempt ran");
  if (last.spawnError) return fail("failed", `docker could not be run: ${last.spawnError}`);
  const unpinned = DIGEST_WARNING.test(last.outputTail); // printed when a service is updated, not created
  if (unpinned) {
    warnings.push("an image could not be accessed on a registry to record its digest: nodes may run different versions");
    log.warn(warnings.at(-1) as string);
  }
  if (!last.timedOut && last.exitCode !== 0) {
    const why = isTransient(last) ? `still failing after ${attempts.length} attempts` : "permanent failure";
    const said = decisiveLine(last.outputTail);
    return fail("failed", `docker stack deploy exited ${last.exitCode}: ${why}${said ? `: ${said}` : ""}`);
  }
  applied = true;
  if (last.timedOut)
    warnings.push(`docker stack deploy did not return within ${policy.deployTimeoutMs / 1000} s; judged by the services' state`);

  let verdict: Verdict;
  try {
    verdict = await waitConverged(d, rendered.asked, since, Math.max(deadline, clock.now().getTime() + 10_000));
  } catch (err) {
    return fail("failed", `verification failed: ${(err as Error).message}`);
  }
  if (verdict.status === "pending") return fail("failed", `not converged within the deploy timeout: ${verdict.reason}`, verdict.services);
  if (verdict.status !== "converged") return fail(verdict.status, verdict.reason, verdict.services);
  if (stack.healthUrl) {
    const problem = await checkHealth(stack.healthUrl, job.sha, policy.healthTimeoutMs, { clock, everyMs: policy.healthEveryMs });
    if (problem) return fail("failed", problem, verdict.services);
  }
  if (unpinned && policy.digestPolicy === "fail") {
    return fail(
      "failed",
      "the stack was updated, but an image digest could not be pinned, so nodes may run different builds (DIGEST_POLICY=fail)",
      verdict.services,
    );
  }
  const release = releaseOf(stack.name, verdict.specImages, rendered.stackFileHash);
  return {
    outcome: "success",
    attempts,
    services: verdict.services,
    warnings,
    applied,
    release,
    objects: rendered.objects,
    ...(plan ? { plan } : {}),
  };
}
