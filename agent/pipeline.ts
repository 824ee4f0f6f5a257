import { applyRelease, whileApplying } from "./apply/index.ts";
import { ended, type DeployDeps, type DeployResult, type Deploying } from "./deploying.ts";
import { prepareRelease } from "./prepare/index.ts";
import { deployStages } from "./stages.ts";
import { inspectStack, verifyRelease, verifyUnchanged } from "./verify/index.ts";

// One stack's deploy, as its steps: prepare (render, policy, plan) → apply (docker stack deploy) →
// verify (converged, healthy, pinned); a stack with stages (swarmhook.stage labels, job services)
// applies and verifies stage by stage (agent/stages.ts). Each step takes the Deploying value the one before produced
// and gives it on, or ends the deploy with its DeployResult. Record and report follow in run-stack.ts.

export type { DeployDeps, DeployHooks, DeployPolicy, DeployResult, Deploying } from "./deploying.ts";

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
  const prepared = await prepareRelease(d);
  if ("outcome" in prepared) return prepared;
  try {
    const r: Deploying = { d, ...prepared, attempts: [], warnings: [...prepared.rendered.warnings], applied: false };
    if (d.policy.dryRun) return ended(r, "planned", `DRY_RUN: ${r.plan?.summary ?? "the plan failed"}; nothing deployed`);
    if (r.stages) return await deployStages(r, r.stages);
    if (r.plan && r.plan.changes.length === 0 && r.plan.unresolved.length === 0) return await verifyUnchanged(r);
    const look = async () => (await inspectStack(r.d.docker, r.d.stack.name, r.rendered.asked, r.since, r.env)).progress;
    const applied = await whileApplying(r, () => applyRelease(r), look);
    return "outcome" in applied ? applied : await verifyRelease(applied);
  } finally {
    await prepared.removePlaintext();
    await prepared.rendered.cleanup();
  }
}
