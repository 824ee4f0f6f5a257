import { promises as fs } from "node:fs";
import type { Logger } from "pino";
import path from "node:path";
import { branchOf, shortSha, type Deployed } from "../../spool/index.ts";
import type { Ancestry, Pending } from "../coalesce.ts";
import type { StackConfig } from "../config.ts";
import { fileInCheckout, openMirror, type GitToken, type Mirror } from "./git.ts";

export interface GitBatch {
  mirror: Mirror;
  /** Jobs whose commit git cannot vouch for: not in the repository, or not on a branch the stack deploys. */
  invalid: { pending: Pending; reason: string }[];
  /** The jobs left, to be coalesced with `ancestry`. */
  jobs: Pending[];
  ancestry: Ancestry;
}

/**
 * Fetch the stack's repository and judge a batch by it: a deploy job's commit must be in the history
 * of a branch the stack deploys (its `branches`, else the push's own branch) — a signed request
 * cannot deploy a commit that never landed there. Then every "is a in b's history" the coalescing
 * needs is asked of git once. Throws GitError when the fetch fails (the jobs are recorded failed).
 */
export async function prepareGitBatch(
  stateDir: string,
  stack: StackConfig,
  batch: Pending[],
  deployed: Deployed | null,
  log: Logger,
  token?: GitToken,
): Promise<GitBatch> {
  const git = stack.git;
  if (!git) throw new Error(`stack ${stack.name} has no git source`);
  const mirror = await openMirror(stateDir, git, token);
  const started = Date.now();
  log.info({ stack: stack.name, mirror: mirror.dir }, "fetching the stack's repository");
  await mirror.fetch();
  log.info({ stack: stack.name, tookMs: Date.now() - started }, "fetched");
  const invalid: GitBatch["invalid"] = [];
  const jobs: Pending[] = [];
  for (const p of batch) {
    const { sha } = p.job;
    if (!(await mirror.hasCommit(sha))) {
      invalid.push({ pending: p, reason: `commit ${shortSha(sha)} is not in the stack's repository` });
      continue;
    }
    const branch = p.job.kind === "deploy" ? branchOf(p.job.ref) : null;
    const branches = stack.branches.length > 0 ? stack.branches : branch ? [branch] : [];
    if (p.job.kind === "deploy" && !(await mirror.onBranch(sha, branches))) {
      invalid.push({
        pending: p,
        reason: `commit ${shortSha(sha)} is not on ${branches.join(", ") || "a branch"}: only what landed there deploys`,
      });
      continue;
    }
    jobs.push(p);
  }
  const heads = [
    ...new Set([...(deployed && (await mirror.hasCommit(deployed.sha)) ? [deployed.sha] : []), ...jobs.map((p) => p.job.sha)]),
  ];
  const known = new Map<string, boolean>();
  for (const a of heads) for (const b of heads) if (a !== b) known.set(`${a}>${b}`, await mirror.isAncestor(a, b));
  return { mirror, invalid, jobs, ancestry: (a, b) => known.get(`${a}>${b}`) ?? false };
}

/**
 * The commit's tree in a clean per-job directory under STATE_DIR/jobs, and the stack file in it:
 * what `docker stack deploy` reads, with every file it references (env_file, configs, secrets), as
 * committed. `cleanup` removes the directory.
 */
export async function checkout(stateDir: string, mirror: Mirror, stack: StackConfig, jobId: string, sha: string) {
  const dir = path.join(stateDir, "jobs", jobId);
  await fs.rm(dir, { recursive: true, force: true }); // what a dead run left
  await mirror.extract(sha, dir);
  const file = fileInCheckout(dir, stack.git?.path ?? stack.file);
  return { root: dir, file, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

/**
 * At start, before any job runs: remove the checkouts a killed watcher left in STATE_DIR/jobs (with
 * any env_file decrypted in them). A job still in work/ is checked out again. Returns the job ids removed.
 */
export async function removeDeadCheckouts(stateDir: string): Promise<string[]> {
  const root = path.join(stateDir, "jobs");
  const left = await fs.readdir(root).catch(() => [] as string[]);
  for (const name of left) await fs.rm(path.join(root, name), { recursive: true, force: true });
  return left;
}
