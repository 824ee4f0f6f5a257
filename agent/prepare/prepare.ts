import type { DeployDeps, DeployResult } from "../deploying.ts";
import { planStack, type Plan } from "./plan.ts";
import { deployEnv, renderStack, type Rendered } from "./render.ts";
import { policyRefusals } from "./stack-policy.ts";

/** What the prepare step hands on: the rendered stack (its temp files until cleanup), its plan, the deploy's clock marks. */
export interface Prepared {
  rendered: Rendered;
  plan: Plan | undefined;
  since: Date;
  deadline: number;
  /** What every docker command of this deploy is run with: IMAGE_TAG, DEPLOY_SHA and the stack's variables. */
  env: Record<string, string>;
}

const before = (outcome: DeployResult["outcome"], reason: string): DeployResult => ({
  outcome,
  reason,
  attempts: [],
  services: [],
  warnings: [],
  applied: false,
});

/**
 * Render the job's stack (a rollback's images laid over it), refuse what its policy forbids, and plan
 * it against what runs. Nothing here changes the cluster. Ends the deploy (`failed`, `invalid`) when
 * the stack cannot be rendered or is refused; the caller cleans the rendered files up otherwise.
 */
export async function prepareRelease(d: DeployDeps): Promise<Prepared | DeployResult> {
  let rendered: Rendered;
  try {
    rendered = await renderStack(d.docker, d.stack.file, d.stack.name, d.job, { versionObjects: Boolean(d.stack.git), vars: d.stack.vars });
  } catch (err) {
    return before("failed", `the stack file could not be rendered: ${(err as Error).message}`);
  }
  const refused = policyRefusals(rendered.doc, d.stack.policy);
  if (refused.length > 0) {
    await rendered.cleanup();
    return before("invalid", `refused by the stack's policy: ${refused.join("; ")}`);
  }
  for (const w of rendered.warnings) d.log.warn(w);
  const startedAt = d.clock.now().getTime();
  const env = deployEnv(d.job.sha, d.stack.vars);
  const plan = await planStack(d.docker, d.stack.name, rendered.doc, env).catch((err: unknown) => {
    d.log.warn({ err }, "could not plan the deploy: deploying without a plan");
    return undefined;
  });
  if (plan) d.log.info({ plan: plan.summary }, "plan");
  return { rendered, plan, since: new Date(startedAt - 1000), deadline: startedAt + d.policy.deployTimeoutMs, env };
}
