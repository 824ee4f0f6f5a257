import type { StackConfig } from "../config.ts";
import { openMirror, type GitToken, type Mirror } from "../prepare/index.ts";

/** The commit a stack's first branch points at now, as its source says. */
export interface Tip {
  sha: string;
  branch: string;
  /** The commit's date, shown to people only (a committer sets it). */
  committedAt: string | null;
  /** For a git stack: the mirror the tip was read from (ancestry is asked of it). */
  mirror?: Mirror;
}

/** What each stack's source says of its branch: a tip, a problem (said in the log), or nothing to ask (no tip check). */
export type TipAnswer = { tip: Tip } | { problem: string } | { none: true };

export interface TipSources {
  stateDir: string;
  gitToken?: GitToken | undefined;
  /** The branch tip on GitHub (file stacks with a repository, when the watcher has GitHub credentials). */
  githubTip?: ((repository: string, branch: string) => Promise<{ sha: string; committedAt: string | null }>) | undefined;
}

/**
 * Where each stack's branch is now. Git stacks: one fetch per repository URL however many stacks
 * share it, then each stack's first branch read from the mirror. Stacks on this node that name a
 * repository: GitHub's branch, when the watcher has GitHub credentials. Any other stack: no tip check.
 * A fetch or a request that fails is that source's stacks' problem only.
 * @example
 * const tips = await branchTips(stacks, { stateDir: "/var/lib/swarmhook", githubTip });
 */
export async function branchTips(stacks: readonly StackConfig[], src: TipSources): Promise<Map<string, TipAnswer>> {
  const out = new Map<string, TipAnswer>();
  const byUrl = new Map<string, StackConfig[]>();
  for (const s of stacks) {
    const branch = s.branches[0];
    if (!branch) out.set(s.name, { none: true });
    else if (s.git) byUrl.set(s.git.url, [...(byUrl.get(s.git.url) ?? []), s]);
    else if (s.repository && src.githubTip) {
      const answer = await src.githubTip(s.repository, branch).then(
        (t): TipAnswer => ({ tip: { ...t, branch } }),
        (err: unknown): TipAnswer => ({ problem: `GitHub could not say where ${branch} is: ${(err as Error).message}` }),
      );
      out.set(s.name, answer);
    } else out.set(s.name, { none: true });
  }
  for (const group of byUrl.values()) {
    const first = group[0] as StackConfig & { git: NonNullable<StackConfig["git"]> };
    let mirror: Mirror;
    try {
      mirror = await openMirror(src.stateDir, first.git, src.gitToken);
      await mirror.fetch();
    } catch (err) {
      for (const s of group) out.set(s.name, { problem: (err as Error).message });
      continue;
    }
    for (const s of group) {
      const branch = s.branches[0] as string;
      const sha = await mirror.tip(branch);
      out.set(
        s.name,
        sha
          ? { tip: { sha, branch, committedAt: await mirror.committedAt(sha), mirror } }
          : { problem: `the repository has no branch ${branch}` },
      );
    }
  }
  return out;
}
