import { branchOf, sameRepository, tagMatches, tagOf, type Job } from "../spool/index.ts";
import type { StackConfig } from "./config.ts";

/**
 * The stack a job is for: a rollback names its stack; a deploy goes to the first configured stack
 * that deploys its repository and its branch (or tag, by the stack's tag patterns), judged here
 * again whatever the API let through. Undefined when none is configured for it.
 */
export function stackFor<T extends { config: StackConfig }>(stacks: Iterable<T>, job: Job): T | undefined {
  if (job.kind === "rollback") {
    for (const s of stacks) if (s.config.name === job.stack) return s;
    return undefined;
  }
  const branch = branchOf(job.ref);
  const tag = tagOf(job.ref);
  for (const s of stacks) {
    const { repository, branches, tags } = s.config;
    if (repository && !sameRepository(repository, job.repository)) continue;
    if (branch !== null ? !branches.includes(branch) : tag === null || !tagMatches(tags, tag)) continue;
    return s;
  }
  return undefined;
}
