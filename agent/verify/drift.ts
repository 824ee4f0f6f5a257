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
  const { doc, warnings } = await renderRelease(docker, stack, file, deployed);
  const plan = await planStack(docker, stack.name, doc, deployEnv(deployed.sha, stack.vars));
  return { plan, warnings };
}

/**
 * The last good release as a rollback to it would deploy it: `file` rendered for its commit with the
 * release's images laid over it (`docker stack config`, twice). What drift compares the running
 * services with; the reconcile loop keeps it while the release and the file stay the same.
 */
export async function renderRelease(
  docker: DockerRunner,
  stack: Pick<StackConfig, "name" | "vars" | "git">,
  file: string,
  deployed: Pick<Deployed, "sha" | "release" | "record">,
): Promise<{ doc: unknown; warnings: string[] }> {
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
  await rendered.cleanup();
  return { doc: rendered.doc, warnings: rendered.warnings };
}
