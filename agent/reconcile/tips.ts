import type { StackConfig } from "../config.ts";
import { openMirror, type GitToken, type Mirror } from "../prepare/index.ts";

/** The commit a stack's first branch points at now, as its source says. */
export interface Tip {
  sha: string;
  branch: string;
  /** The commit's date, shown to people only (a committer sets it); asked only when a job is queued for it. */
  committedAt: () => Promise<string | null>;
  /** For a git stack: its mirror (fetched before ancestry is asked of it, when it lacks the tip). */
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
 * Where each stack's branch is now. Git stacks: one `git ls-remote` per repository URL however many
 * stacks share it (the mirror fetches only when a tip is to be judged: deployTip). Stacks on this node that name a
 * repository: GitHub's branch, when the watcher has GitHub credentials. Any other stack: no tip check.
 * A fetch or a request that fails is that source's stacks' problem only.
 * @example
 * const tips = await branchTips(stacks, { stateDir: "/var/lib/swarmhook", githubTip });
 */
export async function branchTips(stacks: readonly StackConfig[], src: TipSources): Promise<Map<string, TipAnswer>> {
  const out = new Map<string, TipAnswer>();
  const byUrl = new Map<string, StackConfig[]>();
  const asked = new Map<string, TipAnswer>(); // one request per repository and branch, however many stacks share it
  for (const s of stacks) {
    const branch = s.branches[0];
    if (!branch) out.set(s.name, { none: true });
    else if (s.git) byUrl.set(s.git.url, [...(byUrl.get(s.git.url) ?? []), s]);
    else if (s.repository && src.githubTip) {
      const key = `${s.repository.toLowerCase()}\0${branch}`;
      const answer =
        asked.get(key) ??
        (await src.githubTip(s.repository, branch).then(
          (t): TipAnswer => ({ tip: { sha: t.sha, branch, committedAt: () => Promise.resolve(t.committedAt) } }),
          (err: unknown): TipAnswer => ({ problem: `GitHub could not say where ${branch} is: ${(err as Error).message}` }),
        ));
      asked.set(key, answer);
      out.set(s.name, answer);
    } else out.set(s.name, { none: true });
  }
  for (const group of byUrl.values()) {
    const first = group[0] as StackConfig & { git: NonNullable<StackConfig["git"]> };
    let mirror: Mirror;
    let tips: Map<string, string>;
    try {
      mirror = await openMirror(src.stateDir, first.git, src.gitToken);
      tips = await mirror.remoteTips();
    } catch (err) {
      for (const s of group) out.set(s.name, { problem: (err as Error).message });
      continue;
    }
    for (const s of group) {
      const branch = s.branches[0] as string;
      const sha = tips.get(branch);
      const m = mirror;
      out.set(
        s.name,
        sha
          ? { tip: { sha, branch, committedAt: () => m.committedAt(sha), mirror: m } }
          : { problem: `the repository has no branch ${branch}` },
      );
    }
  }
  return out;
}
