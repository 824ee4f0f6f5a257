// `swarmhook plan`: what a deploy of a commit would change in a stack, before it happens.
import type { AgentConfig, StackConfig } from "../agent/config.ts";
import type { DockerRunner } from "../agent/docker.ts";
import { outsideCheckout } from "../agent/prepare/confine.ts";
import { policyRefusals } from "../agent/prepare/stack-policy.ts";
import { checkout } from "../agent/prepare/git-stack.ts";
import { openMirror } from "../agent/prepare/git.ts";
import { describeField, planStack, type Plan } from "../agent/prepare/plan.ts";
import { deployEnv, renderStack } from "../agent/prepare/render.ts";
import { ageKeysOnDemand, decryptEnvFiles, SecretFileError } from "../agent/prepare/secrets.ts";
import { createRegistryClient, dockerCredentials, insecureRegistries, pinRendered } from "../agent/prepare/index.ts";
import { pino } from "pino";
import { systemClock } from "../lib/clock.ts";
import { JOB_VERSION, openSpool, readDeployed, shortSha, type DeployJob } from "../spool/index.ts";

export const PLAN_HELP = `swarmhook plan --stack NAME [--sha SHA] [--json]
  Renders the stack as the watcher would deploy it (its own configuration: AGENT_CONFIG, or
  STACK_FILE and STACK_NAME) and prints what would change in the running services: services added
  or removed, image (each tag resolved through its registry as a deploy does, so a tag that moved
  shows as "web: image app:v1 sha256:<old 12 hex> → sha256:<new 12 hex>"), replicas, environment
  keys (never values), ports, placement constraints,
  networks, configs and secrets, resources, update and rollback config. A stack from git is planned
  at SHA (default: the tip of its first branch); a stack file on this node with IMAGE_TAG=SHA
  (default: the commit the stack runs). What the stack's policy (AGENT_CONFIG policy:) refuses is
  named, service by service: such a commit is recorded invalid, never deployed. Exit 0 nothing would
  change, 2 something would, 1 the policy refuses it or any error (bad usage included). e.g. on kvm8:  just plan app   |   swarmhook plan --stack app --sha 3f2a9c1 --json
`;

/** What a deploy would change, what in it the stack's policy refuses (one line per offence), and which images no registry resolved (and why). */
export interface Planned {
  plan: Plan;
  refused: string[];
  unpinned: string[];
}

/** A usage or lookup problem: printed, exit 1. */
export class PlanError extends Error {}

/** A deploy job for `sha` that exists only to render the stack the way a deploy would. */
const renderJob = (sha: string): DeployJob => {
  const now = new Date().toISOString();
  return {
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: "plan",
    event: "manual",
    repository: "manual/deploy",
    ref: "refs/heads/main",
    sha,
    committedAt: now,
    sender: "plan",
    receivedAt: now,
  };
};

async function planGit(config: AgentConfig, stack: StackConfig, docker: DockerRunner, sha: string | undefined) {
  const mirror = await openMirror(config.stateDir, stack.git as NonNullable<StackConfig["git"]>);
  await mirror.fetch();
  const branch = stack.branches[0] ?? "main";
  const full = sha ? await mirror.resolve(sha) : await mirror.resolve(`refs/remotes/origin/${branch}`);
  if (!full)
    throw new PlanError(
      sha ? `commit ${sha} is not in ${stack.name}'s repository` : `branch ${branch} not found in ${stack.name}'s repository`,
    );
  const co = await checkout(config.stateDir, mirror, stack, `plan-${process.pid}`, full);
  try {
    const outside = await outsideCheckout(co.root, co.file);
    if (outside) throw new PlanError(`the commit ${full.slice(0, 12)} is refused: ${outside}`);
    return {
      sha: full,
      ...(await planRendered(docker, stack, co.file, full, { versionObjects: true, keyFile: config.ageKeyFile, checkout: co.root })),
    };
  } finally {
    await co.cleanup();
  }
}

/**
 * Render the stack file as a deploy of `sha` would (renderStack), resolve its images through their
 * registries as a deploy does (never waiting, never failing on registry trouble: an image that cannot
 * be resolved is compared by name and said why), and plan that.
 */
async function planRendered(
  docker: DockerRunner,
  stack: StackConfig,
  file: string,
  sha: string,
  how: { versionObjects: boolean; keyFile: string | undefined; checkout: string | null },
): Promise<Planned> {
  const keys = ageKeysOnDemand(how.keyFile);
  const decrypted = await decryptEnvFiles(file, how.checkout, keys).catch(secretError);
  try {
    return await planDecrypted(docker, stack, file, sha, { versionObjects: how.versionObjects, vars: stack.vars, keys });
  } finally {
    await decrypted.removePlaintext();
  }
}

/** An encrypted file that cannot be decrypted: the plan is refused with why (never a value). */
const secretError = (err: unknown): never => {
  throw err instanceof SecretFileError ? new PlanError(`an encrypted file cannot be decrypted: ${err.message}`) : err;
};

async function planDecrypted(
  docker: DockerRunner,
  stack: StackConfig,
  file: string,
  sha: string,
  o: Parameters<typeof renderStack>[4],
): Promise<Planned> {
  const first = await renderStack(docker, file, stack.name, renderJob(sha), o).catch(secretError);
  const log = pino({ level: "silent" });
  const registry = createRegistryClient({ credentials: dockerCredentials(), insecure: insecureRegistries(docker) });
  const deps = { docker, registry, log, clock: systemClock, policy: { digestPolicy: "warn" as const, imageWaitMs: 0 } };
  const r = await pinRendered(deps, first, (images) => renderStack(docker, file, stack.name, renderJob(sha), { ...o, images }));
  if (r.status !== "resolved") throw new PlanError(r.status === "failed" ? r.reason : r.status);
  try {
    const plan = await planStack(docker, stack.name, r.rendered.doc, deployEnv(sha, stack.vars));
    const unpinned = r.images.filter((i) => i.unpinned).map((i) => `${i.service}: ${i.image} not resolved (${i.unpinned as string})`);
    return { plan, refused: policyRefusals(r.rendered.doc, stack.policy), unpinned };
  } finally {
    await r.rendered.cleanup();
  }
}

/**
 * The plan for one stack of the watcher's configuration.
 * @example
 * const { sha, plan } = await planFor(config, "app", docker, undefined);
 */
export async function planFor(
  config: AgentConfig,
  name: string,
  docker: DockerRunner,
  sha: string | undefined,
): Promise<{ sha: string } & Planned> {
  const stack = config.stacks.find((s) => s.name === name);
  if (!stack) throw new PlanError(`no stack ${name} in the watcher's configuration (${config.stacks.map((s) => s.name).join(", ")})`);
  if (stack.git) return planGit(config, stack, docker, sha);
  const at = sha ?? (await readDeployed(openSpool(config.spoolDir), name).catch(() => ({ deployed: null }))).deployed?.sha;
  if (!at) throw new PlanError(`no commit to plan: give --sha (state/${name}.json names none)`);
  if (!/^[0-9a-f]{40}$/.test(at)) throw new PlanError("--sha must be the full 40-hex commit for a stack file on this node");
  return {
    sha: at,
    ...(await planRendered(docker, stack, stack.file, at, { versionObjects: false, keyFile: config.ageKeyFile, checkout: null })),
  };
}

export function formatPlan(stack: string, sha: string, { plan, refused, unpinned }: Planned, json: boolean): string {
  if (json)
    return `${JSON.stringify({ stack, sha, summary: plan.summary, changes: plan.changes, unresolved: plan.unresolved, unpinned, refused }, null, 2)}\n`;
  const lines = [`plan for ${stack} at ${shortSha(sha)}:`];
  if (refused.length > 0) {
    lines.push("  refused by the stack's policy (a deploy of this commit is recorded invalid, nothing changes):");
    for (const r of refused) lines.push(`    ${r}`);
  }
  if (plan.changes.length === 0) lines.push("  no changes");
  for (const c of plan.changes) {
    if (c.change !== "update") lines.push(`  ${c.service}: ${c.change === "add" ? "added" : "removed"}`);
    for (const f of c.fields) lines.push(`  ${c.service}: ${describeField(f)}`);
  }
  for (const u of unpinned) lines.push(`  ${u}`);
  if (plan.unresolved.length > 0)
    lines.push(`  (compared by name, so a moved tag cannot be seen: ${plan.unresolved.join(", ")} — a deploy asks the registry again)`);
  if (plan.changes.length > 0) lines.push(`${plan.changes.length} service${plan.changes.length === 1 ? "" : "s"} would change`);
  return `${lines.join("\n")}\n`;
}
