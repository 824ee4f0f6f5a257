import type { Logger } from "pino";
import type { Attempt, DeployJob, ServiceState } from "../spool/index.ts";
import type { StackConfig } from "./config.ts";
import type { DockerResult, DockerRunner } from "./docker.ts";
import { askedImages, checkHealth, inspectStack, type Verdict } from "./verify.ts";

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

export interface DeployPolicy {
  deployTimeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  healthTimeoutMs: number;
  digestPolicy: "warn" | "fail";
  /** How often to inspect the services while they converge. */
  verifyEveryMs?: number;
}

export interface DeployResult {
  outcome: "success" | "failed" | "rolled_back";
  reason?: string;
  attempts: Attempt[];
  services: ServiceState[];
  warnings: string[];
}

export function isTransient(r: DockerResult): boolean {
  return r.spawnError === undefined && !r.timedOut && r.exitCode !== 0 && TRANSIENT.some((re) => re.test(r.outputTail));
}

function toAttempt(n: number, r: DockerResult): Attempt {
  return {
    attempt: n,
    command: r.command,
    exitCode: r.exitCode,
    timedOut: r.timedOut,
    durationMs: r.durationMs,
    outputTail: r.outputTail,
    ...(r.spawnError ? { error: r.spawnError } : {}),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Deploy one job's commit to one stack and prove it took: `docker stack deploy` (retried with
 * backoff when the failure is transient), then every service inspected until it converged on the
 * asked images, rolled back, or the deploy timeout ran out; then the health URL, when set.
 * @example
 * const r = await deployJob({ docker, log, policy, stack, job });
 * if (r.outcome !== "success") log.error(r.reason);
 */
export async function deployJob(deps: { docker: DockerRunner; log: Logger; policy: DeployPolicy; stack: StackConfig; job: DeployJob }): Promise<DeployResult> {
  const { docker, log, policy, stack, job } = deps;
  const env = { IMAGE_TAG: job.sha, DEPLOY_SHA: job.sha };
  const args = ["stack", "deploy", "-c", stack.file, stack.name, "--with-registry-auth", "--detach=false"];
  const attempts: Attempt[] = [];
  const warnings: string[] = [];
  const since = new Date(Date.now() - 1000); // update states from before this deploy are not ours
  const deadline = Date.now() + policy.deployTimeoutMs;
  const fail = (outcome: DeployResult["outcome"], reason: string, services: ServiceState[] = []): DeployResult => ({ outcome, reason, attempts, services, warnings });

  let last: DockerResult | undefined;
  for (let n = 1; n <= policy.retries + 1; n++) {
    log.info({ attempt: n, command: ["docker", ...args] }, "deploy started");
    last = await docker.run(args, { env, timeoutMs: Math.max(1000, deadline - Date.now()), onLine: (line) => log.info({ docker: line }, "docker") });
    attempts.push(toAttempt(n, last));
    if (last.exitCode === 0 || last.timedOut || !isTransient(last) || n > policy.retries) break;
    const wait = Math.min(policy.retryBackoffMs * 2 ** (n - 1), 60_000);
    log.warn({ attempt: n, exitCode: last.exitCode, retryInMs: wait }, "deploy failed transiently; retrying");
    await sleep(wait);
  }
  if (!last) return fail("failed", "no attempt ran");
  if (last.spawnError) return fail("failed", `docker could not be run: ${last.spawnError}`);
  // Docker prints this when it updates a service (not when it creates one)
  const unpinned = DIGEST_WARNING.test(last.outputTail);
  if (unpinned) {
    const w = "an image could not be accessed on a registry to record its digest: nodes may run different versions";
    warnings.push(w);
    log.warn(w);
  }
  if (!last.timedOut && last.exitCode !== 0) {
    const why = isTransient(last) ? `still failing after ${attempts.length} attempts` : "permanent failure";
    return fail("failed", `docker stack deploy exited ${last.exitCode}: ${why}`);
  }
  if (last.timedOut) warnings.push(`docker stack deploy did not return within ${policy.deployTimeoutMs / 1000} s; judged by the services' state`);

  let verdict: Verdict;
  try {
    const asked = await askedImages(docker, stack.file, stack.name, env);
    const verifyDeadline = Math.max(deadline, Date.now() + 10_000);
    for (;;) {
      verdict = await inspectStack(docker, stack.name, asked, since, env);
      if (verdict.status !== "pending" || Date.now() > verifyDeadline) break;
      await sleep(policy.verifyEveryMs ?? 1000);
    }
  } catch (err) {
    return fail("failed", `verification failed: ${(err as Error).message}`);
  }
  if (verdict.status === "pending") return fail("failed", `not converged within the deploy timeout: ${verdict.reason}`, verdict.services);
  if (verdict.status !== "converged") return fail(verdict.status, verdict.reason, verdict.services);

  if (stack.healthUrl) {
    const problem = await checkHealth(stack.healthUrl, job.sha, policy.healthTimeoutMs);
    if (problem) return fail("failed", problem, verdict.services);
  }
  if (unpinned && policy.digestPolicy === "fail") {
    return fail("failed", "the stack was updated, but an image digest could not be pinned, so nodes may run different builds (DIGEST_POLICY=fail)", verdict.services);
  }
  return { outcome: "success", attempts, services: verdict.services, warnings };
}
