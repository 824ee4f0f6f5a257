import { createHash } from "node:crypto";
import { branchOf, sameRepository, shortSha, tagMatches, tagOf, type Job, type Outcome } from "../spool/index.ts";
import type { StackConfig } from "./config.ts";

/** Whether `stack` deploys a push of `job`'s repository and branch (or tag, by the stack's tag patterns). */
export function deploys(stack: StackConfig, job: Extract<Job, { kind: "deploy" }>): boolean {
  const { repository, branches, tags } = stack;
  if (repository && !sameRepository(repository, job.repository)) return false;
  const branch = branchOf(job.ref);
  const tag = tagOf(job.ref);
  return branch !== null ? branches.includes(branch) : tag !== null && tagMatches(tags, tag);
}

/**
 * The stacks a job is for, judged here again whatever the API let through: a rollback names its
 * stack; a deploy goes to every configured stack that deploys its repository and its branch (or
 * tag), dependencies first (`dependsOn`), else in the order they are configured. A deploy that names
 * its stack (the watcher's own copy for one stack, a reconcile job) goes to that stack only, and only
 * when the stack deploys it anyway. Empty when none is configured for it.
 */
export function stacksFor<T extends { config: StackConfig }>(stacks: Iterable<T>, job: Job): T[] {
  const all = [...stacks];
  if (job.kind === "rollback") return all.filter((s) => s.config.name === job.stack);
  const matching = all.filter((s) => deploys(s.config, job) && (job.stack === undefined || s.config.name === job.stack));
  return dependenciesFirst(matching);
}

/** `stacks` ordered so that each comes after the ones it depends on (directly or not), else as given. */
export function dependenciesFirst<T extends { config: StackConfig }>(stacks: readonly T[]): T[] {
  const out: T[] = [];
  const byName = new Map(stacks.map((s) => [s.config.name, s]));
  const place = (s: T, seen: Set<string>) => {
    if (out.includes(s) || seen.has(s.config.name)) return; // a cycle is refused at start; never loop here
    seen.add(s.config.name);
    for (const d of s.config.dependsOn) {
      const dep = byName.get(d);
      if (dep) place(dep, seen);
    }
    out.push(s);
  };
  for (const s of stacks) place(s, new Set());
  return out;
}

/**
 * The delivery id of the watcher's copy of a push for one more stack: the push's own id and a hash of
 * the stack's name, so the same push gives the same id (a copy is never queued twice, and a
 * redelivery retries exactly the copies that failed).
 */
export const copyJobId = (deliveryId: string, stack: string): string =>
  `${deliveryId.slice(0, 60)}-s${createHash("sha256").update(`${deliveryId}\0${stack}`).digest("hex").slice(0, 12)}`;

/** Outcomes of a dependency that block its dependents for the same commit. */
const BLOCKING: ReadonlySet<Outcome> = new Set(["failed", "rolled_back", "invalid", "blocked"]);

/**
 * Why a deploy of `sha` to a stack may not go on: a stack it depends on (`dependsOn`, only those that
 * deploy the same repository and branch) ended its job for the commit without success, or has no
 * outcome for it and does not run it (its state file, which outlives a restart) — a job naming the
 * dependent stack alone does not jump the order. Null when every dependency deployed it (or, DRY_RUN,
 * planned it; or a newer commit superseded it there).
 */
export async function blockedBy(
  dependsOn: readonly string[],
  sha: string,
  outcomeOf: (stack: string, sha: string) => { outcome: Outcome; reason?: string | undefined } | undefined,
  runs: (stack: string) => Promise<string | null>,
): Promise<string | null> {
  for (const d of dependsOn) {
    const o = outcomeOf(d, sha);
    if (o && BLOCKING.has(o.outcome))
      return `blocked: ${d}, which this stack depends on, ended ${o.outcome} for ${shortSha(sha)}${o.reason ? ` (${o.reason.split("\n")[0]?.slice(0, 300)})` : ""}; nothing of this stack changed`;
    if (!o && (await runs(d)) !== sha)
      return `blocked: ${d}, which this stack depends on, has not deployed ${shortSha(sha)} (it deploys first); nothing of this stack changed`;
  }
  return null;
}
