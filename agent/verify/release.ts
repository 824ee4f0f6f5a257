import type { Release } from "../../spool/index.ts";
import type { DeployResult, Deploying } from "../deploying.ts";
import { ended } from "../deploying.ts";
import { redactSecretEnv, releaseOf } from "../prepare/index.ts";
import { checkHealth, inspectStack, type Verdict } from "./verify.ts";

/** Inspect the stack until it converged on the asked images, rolled back, or `deadline` passed. */
async function waitConverged(r: Deploying, deadline: number): Promise<Verdict> {
  const { docker, stack, clock, policy } = r.d;
  for (;;) {
    const verdict = await inspectStack(docker, stack.name, r.rendered.asked, r.since, r.env);
    await r.d.hooks?.onProgress?.("verifying", verdict.progress);
    if (verdict.status !== "pending" || clock.now().getTime() > deadline) return verdict;
    await clock.sleep(policy.verifyEveryMs ?? 1000);
  }
}

/** The health URL, when the stack has one: a problem, or null. */
const health = async (r: Deploying, verdict: Verdict) => {
  if (r.d.stack.healthUrl) await r.d.hooks?.onProgress?.("checking health", verdict.progress);
  return r.d.stack.healthUrl
    ? checkHealth(r.d.stack.healthUrl, r.d.job.sha, r.d.policy.healthTimeoutMs, { clock: r.d.clock, everyMs: r.d.policy.healthEveryMs })
    : null;
};

/** The release with the secret versions it ran with (a rollback puts them back). */
function withSecrets(release: Release, r: Deploying): Release {
  const secrets = r.rendered.objects.filter((o) => o.kind === "secret").map(({ key, name }) => ({ key, name }));
  return secrets.length > 0 ? { ...release, secrets } : release;
}

const succeeded = (r: Deploying, verdict: Verdict, reason?: string): DeployResult => ({
  outcome: "success",
  ...(reason ? { reason } : {}),
  attempts: r.attempts,
  services: verdict.services,
  warnings: r.warnings,
  applied: r.applied,
  release: withSecrets(releaseOf(r.d.stack.name, verdict.specImages, r.rendered.stackFileHash, r.resolvedAt), r),
  objects: r.rendered.objects,
  deployedDoc: redactSecretEnv(r.rendered.doc, r.secretEnv),
  ...(r.plan ? { plan: r.plan } : {}),
});

/**
 * Prove an applied release took: every service converged on the asked images (a rollback or the
 * deadline ends it), then the health URL. On success the result holds the release. (DIGEST_POLICY was
 * judged before the deploy, when the images were resolved.)
 */
export async function verifyRelease(r: Deploying): Promise<DeployResult> {
  let verdict: Verdict;
  try {
    verdict = await waitConverged(r, Math.max(r.deadline, r.d.clock.now().getTime() + 10_000));
  } catch (err) {
    return ended(r, "failed", `verification failed: ${(err as Error).message}`);
  }
  if (verdict.status === "pending")
    return ended(r, "failed", `not converged within the deploy timeout: ${verdict.reason}`, verdict.services);
  if (verdict.status !== "converged") return ended(r, verdict.status, verdict.reason, verdict.services);
  const problem = await health(r, verdict);
  if (problem) return ended(r, "failed", problem, verdict.services);
  return succeeded(r, verdict);
}

/**
 * The plan is empty (and no image tag could have moved): nothing is deployed, and the stack is
 * still proven to run the commit (converged on the asked images, the health URL) before `success`.
 */
export async function verifyUnchanged(r: Deploying): Promise<DeployResult> {
  r.d.log.info("no changes: docker stack deploy is not run; verifying what runs");
  let verdict: Verdict;
  try {
    verdict = await waitConverged(r, r.deadline);
  } catch (err) {
    return ended(r, "failed", `verification failed: ${(err as Error).message}`);
  }
  if (verdict.status !== "converged") return ended(r, "failed", `no changes, but ${verdict.reason}`, verdict.services);
  const problem = await health(r, verdict);
  if (problem) return ended(r, "failed", `no changes, but ${problem}`, verdict.services);
  return succeeded(r, verdict, "no changes");
}
