import { JOB_VERSION, type Deployed, type RollbackJob } from "../../spool/index.ts";
import type { StackConfig } from "../config.ts";
import type { DockerRunner } from "../docker.ts";
import { deployEnv, planStack, renderStack, type Plan } from "../prepare/index.ts";

/** What runs now against what was deployed: each difference as a plan change, and what the comparison could not hold to. */
export interface Drift {
  /** The services and fields that differ (a service the stack does not have, under its namespace, is `remove`). */
  plan: Plan;
  /** Why the comparison may be inexact (a stack file changed since that deploy, an image recorded without a digest). */
  warnings: string[];
}

/**
 * Drift of one stack: its running services planned against the release last recorded as successful
 * (`state/<stack>.json`), rendered from `file` with the release's images laid over it, exactly as a
 * rollback to that release would deploy it. So a stack just deployed by the watcher plans as in sync
 * (pinned digests, Swarm's own defaults), and a service changed by hand (image, replicas, environment
 * keys, ports, constraints, networks, configs, secrets, resources, update/rollback config), a service
 * added under the stack's namespace or one removed shows as a change. Nothing here changes the cluster.
 * @example
 * const { plan } = await detectDrift(docker, stack, stack.file, deployed);
 * if (plan.changes.length > 0) log.warn({ drift: plan.summary }, "drift");
 */
export async function detectDrift(
  docker: DockerRunner,
  stack: Pick<StackConfig, "name" | "vars" | "git">,
  file: string,
  deployed: Pick<Deployed, "sha" | "release" | "record">,
): Promise<Drift> {
  if (!deployed.release) throw new Error(`no release is recorded for stack ${stack.name}: nothing to compare what runs with`);
  const job: RollbackJob = {
    version: JOB_VERSION,
    kind: "rollback",
    deliveryId: "drift",
    stack: stack.name,
    ...(deployed.record?.startsWith("done/") ? { fromRecord: deployed.record } : {}),
    cause: "operator",
    sender: "swarmhook reconcile",
    receivedAt: new Date().toISOString(),
    repository: "manual/deploy",
    ref: "refs/heads/main",
    sha: deployed.sha,
    release: deployed.release,
  };
  const rendered = await renderStack(docker, file, stack.name, job, { versionObjects: Boolean(stack.git), vars: stack.vars });
  try {
    const plan = await planStack(docker, stack.name, rendered.doc, deployEnv(deployed.sha, stack.vars));
    return { plan, warnings: rendered.warnings };
  } finally {
    await rendered.cleanup();
  }
}
