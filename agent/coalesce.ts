import { MAX_MOVES, shortSha, type Deployed, type Job, type Move } from "../spool/index.ts";

/** A job claimed into `work/` and waiting for its stack. */
export interface Pending {
  jobId: string;
  job: Job;
  claimedAt: Date;
}

export interface Coalesced {
  /** The one job to deploy now, or null when every pending job is stale. */
  deploy: Pending | null;
  superseded: { pending: Pending; by: Pending }[];
  stale: { pending: Pending; reason: string }[];
  /** The branch moves to remember in the stack's state (known ones plus this batch's), bounded. */
  moves: Move[];
  /** With git: the job to deploy is neither ahead of nor behind the deployed commit (a force-push). */
  forced?: boolean;
}

/** What git knows about two commits: whether `a` is in `b`'s history (a git stack's mirror, asked beforehand). */
export type Ancestry = (a: string, b: string) => boolean;

const ZERO = /^0{40}$/;

/** Newest receipt last; ties by delivery id. The API's clock orders jobs, never a commit's date. */
export const byReceipt = (a: Pending, b: Pending): number =>
  Date.parse(a.job.receivedAt) - Date.parse(b.job.receivedAt) || a.job.deliveryId.localeCompare(b.job.deliveryId);

/** The moves GitHub reported with these jobs' pushes (`before` → `sha`), a new branch's zero SHA left out. */
function movesOf(pending: readonly Pending[]): Move[] {
  return pending.flatMap(({ job }) =>
    job.kind === "deploy" && job.before && !ZERO.test(job.before) && job.before !== job.sha ? [{ before: job.before, after: job.sha }] : [],
  );
}

function remember(known: readonly Move[], added: readonly Move[]): Move[] {
  const seen = new Set<string>();
  const out: Move[] = [];
  for (const m of [...added].reverse().concat([...known].reverse())) {
    const key = `${m.before}>${m.after}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(m);
  }
  return out.slice(0, MAX_MOVES).reverse();
}

/** Every commit the branch moved through on its way to `head`, following the push chain backwards. */
function movedPast(head: string, moves: readonly Move[]): Set<string> {
  const into = new Map<string, string[]>();
  for (const m of moves) into.set(m.after, [...(into.get(m.after) ?? []), m.before]);
  const past = new Set<string>();
  const todo = [head];
  while (todo.length > 0) {
    for (const before of into.get(todo.pop() as string) ?? []) {
      if (past.has(before)) continue;
      past.add(before);
      todo.push(before);
    }
  }
  return past;
}

/**
 * What to do with the jobs pending for one stack, given what it last deployed. A job is stale when
 * the branch has already moved past its commit (GitHub's push chain: the commit is a `before` on the
 * way to the deployed commit or to another pending job's), unless the two reach each other (a force
 * push back and forth: then receipt order decides). Manual and rollback jobs are never stale. Of the rest, the
 * newest received is deployed and the others are superseded by it. Nothing a committer controls
 * (a commit's date) takes part. With `ancestry` (a git stack), git's history replaces the push
 * chain: a commit in the history of the deployed or of a pending commit is stale, and `forced` says
 * that the one deployed is neither ahead of nor behind what runs (a force-push).
 * @example
 * const { deploy, superseded, stale } = coalesce(pending, deployed);
 */
export function coalesce(pending: readonly Pending[], deployed: Deployed | null, ancestry?: Ancestry): Coalesced {
  const moves = remember(deployed?.moves ?? [], movesOf([...pending].sort(byReceipt)));
  const heads = [...new Set([...(deployed ? [deployed.sha] : []), ...pending.map((p) => p.job.sha)])];
  // the head a commit is behind: by git's history when known, else by GitHub's push chain
  const pastOf = new Map(ancestry ? [] : heads.map((h) => [h, movedPast(h, moves)]));
  const behind = ancestry
    ? (sha: string) => heads.find((h) => h !== sha && ancestry(sha, h))
    : (sha: string) => heads.find((h) => h !== sha && pastOf.get(h)?.has(sha) && !pastOf.get(sha)?.has(h));
  const stale: Coalesced["stale"] = [];
  const live: Pending[] = [];
  for (const p of pending) {
    const sha = p.job.sha;
    const chosen = p.job.kind === "rollback" || p.job.event === "manual"; // an operator's (or the watcher's own) choice
    const ahead = chosen ? undefined : behind(sha);
    if (ahead === undefined) live.push(p);
    else {
      const what = ahead === deployed?.sha ? `the deployed ${shortSha(ahead)}` : `the pending ${shortSha(ahead)}`;
      const how = ancestry ? "is an ancestor of" : "is behind";
      const why = ancestry ? "(git)" : ": the branch has moved past it (push chain)";
      stale.push({ pending: p, reason: `commit ${shortSha(sha)} ${how} ${what}${ancestry ? " " : ""}${why}` });
    }
  }
  live.sort(byReceipt);
  const deploy = live.pop() ?? null;
  const superseded = deploy ? live.map((p) => ({ pending: p, by: deploy })) : [];
  const d = deployed?.sha;
  const forced = Boolean(ancestry && deploy && d && d !== deploy.job.sha && !ancestry(d, deploy.job.sha) && !ancestry(deploy.job.sha, d));
  return { deploy, superseded, stale, moves, ...(forced ? { forced } : {}) };
}
