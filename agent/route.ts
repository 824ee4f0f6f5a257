import { branchOf, sameRepository, type Job } from "../spool/index.ts";
import type { StackConfig } from "./config.ts";

/** The first configured stack that deploys this job's repository and branch, or undefined. */
export function stackFor<T extends { config: StackConfig }>(stacks: Iterable<T>, job: Job): T | undefined {
  const branch = branchOf(job.ref);
  for (const s of stacks) {
    const { repository, branches } = s.config;
    if (repository && !sameRepository(repository, job.repository)) continue;
    if (branches.length > 0 && (branch === null || !branches.includes(branch))) continue;
    return s;
  }
  return undefined;
}
